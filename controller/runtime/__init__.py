"""The running controller: the control loop, watchdog gating and the daemon that supervises them."""
