"""MQTT with Home Assistant discovery: the connection, the published state, the commands, discovery."""
