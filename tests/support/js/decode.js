// Decode Sparkplug B payloads with Eclipse Tahu's sparkplug-payload (npm), not with our code.
// stdin: one JSON object per line, {"topic": ..., "payload": <base64>}.
// stdout: one JSON object per line, {"topic": ..., "decoded": <payload>} or {"topic", "error"}.
// 64-bit values (Long) become decimal strings so nothing is rounded on the way back.
// `node decode.js --datatypes` prints the DataType enum of the package's compiled schema.
"use strict";
const readline = require("readline");
const sparkplug = require("sparkplug-payload").get("spBv1.0");
const proto = require("sparkplug-payload/lib/sparkplugPayloadProto");

function plain(value) {
  if (value === null || value === undefined) return value;
  if (typeof value.toNumber === "function" && typeof value.low === "number") {
    return value.toString(); // a Long
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) {
    return { bytes: Buffer.from(value).toString("base64") };
  }
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === "object") {
    const out = {};
    for (const [k, v] of Object.entries(value)) out[k] = plain(v);
    return out;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return String(value);
  return value;
}

if (process.argv.includes("--datatypes")) {
  process.stdout.write(JSON.stringify(proto.org.eclipse.tahu.protobuf.DataType) + "\n");
  process.exit(0);
}

const rl = readline.createInterface({ input: process.stdin, terminal: false });
rl.on("line", (line) => {
  if (!line.trim()) return;
  const msg = JSON.parse(line);
  let out;
  try {
    const decoded = sparkplug.decodePayload(Buffer.from(msg.payload, "base64"));
    out = { topic: msg.topic, decoded: plain(decoded) };
  } catch (err) {
    out = { topic: msg.topic, error: String(err) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
});
