"""What several I/O edges share: the lower layer under ``telemetry/`` and ``actuators/``.

The edges (telemetry sources, actuators, the store) do not import each other
(import-linter holds that line); what a source and an actuator both need to know about
the machine lives here, once:

- :mod:`.cgroup_layout`: the cgroup file layout, v1 and v2 — file names, how each file
  reads and is written, where a process's cgroup is mounted (pure: text in, values out);
- :mod:`.cgroupfs`: the cgroup tree on disk — which directories are cgroups, which lie
  beneath the configured roots, reading a cgroup's files into named quantities;
- :mod:`.serve_instance`: Ray Serve's instance details and the ``"<app>/<deployment>"``
  container name of a deployment.

This package imports neither the edges nor the actors.
"""
