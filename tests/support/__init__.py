"""Real parts for tests: a socat pty pair (a serial line) and a Mosquitto broker."""
