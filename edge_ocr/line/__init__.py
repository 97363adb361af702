"""The production line: a PLC triggers reads and gets verdicts, an MES gets results (OPC UA, MQTT,
Modbus TCP). `hub` is where the channels and the agent meet; docs/LINE.md is the guide."""
