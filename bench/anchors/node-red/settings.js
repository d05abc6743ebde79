// Node-RED settings for the anchor benchmark (bench/anchor.py): the editor on
// 127.0.0.1 only, warnings only in the log, nothing else changed from the defaults.
module.exports = {
  flowFile: "flow.json",
  uiHost: "127.0.0.1",
  uiPort: parseInt(process.env.PORT || "1880", 10),
  credentialSecret: false,
  logging: { console: { level: "warn", metrics: false, audit: false } },
  editorTheme: { tours: false, projects: { enabled: false } },
};
