"""calico-node's health checks, made sturdier: BIRD readiness/liveness (bird.py), the agent's atomic
status file (statusfile.py) and Calico's IP autodetection methods read through netlink
(autodetect.py)."""
