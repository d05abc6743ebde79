"""Sparkplug B 3.0 edge node: the station as a node SCADA hosts discover by themselves.

``sparkplug_b_pb2`` is generated from Eclipse Tahu's ``sparkplug_b.proto`` (EPL-2.0) by
``scripts/gen-sparkplug``. See docs/sparkplug.md.
"""
