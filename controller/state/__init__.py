"""The station's published state, typed: the one contract every outward view renders.

``models`` (the messages), ``enums`` (their words), ``build`` (models from the control
core's and acquisition's reports), ``dump`` (a model as JSON, and back), ``schema`` (the
JSON Schema files in docs/schema/).
"""
