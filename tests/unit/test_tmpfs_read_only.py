"""Read-only views of a tmpfs (app/edges/tmpfs.py): mountinfo's mount options and super
options are read, and a remount through a read-only view of a read-write tmpfs (which
would make the tmpfs read-only for its writers) is refused (the real fault:
tests/integration/test_edge_faults_real.py)."""

from __future__ import annotations

from prescale.app.edges.tmpfs import Mount, parse_mountinfo, read_only_problem

MOUNTINFO = """\
46 27 0:40 / /srv/vol rw,relatime - tmpfs tmpfs rw,size=24576k
47 27 0:40 / /srv/ro\\040view ro,relatime shared:7 - tmpfs tmpfs rw,size=24576k
48 27 0:41 / /srv/frozen rw,relatime - tmpfs tmpfs ro,size=8192k
49 27 0:42 / /srv/both ro,relatime - tmpfs tmpfs ro,size=8192k
"""


def test_the_read_only_flags_of_the_mount_and_of_the_file_system_are_read():
    vol, view, frozen, both = parse_mountinfo(MOUNTINFO)
    assert vol == Mount("/srv/vol", 0, 40, "/", "tmpfs", "tmpfs")  # flags not compared
    assert (vol.read_only, vol.super_read_only) == (False, False)
    assert (view.mount_point, view.read_only, view.super_read_only) == (
        "/srv/ro view", True, False)
    assert (frozen.read_only, frozen.super_read_only) == (False, True)
    assert (both.read_only, both.super_read_only) == (True, True)


def test_only_a_read_only_view_of_a_read_write_tmpfs_is_a_problem():
    vol, view, frozen, both = parse_mountinfo(MOUNTINFO)
    assert read_only_problem(view) == (
        "is a read-only view of a read-write tmpfs: a remount from here would make the "
        "tmpfs read-only for its writers too")
    # nothing that can write now would be refused after a remount through these
    assert read_only_problem(vol) is read_only_problem(frozen) is read_only_problem(both) \
        is None
    # a line without super options (not what the kernel writes) reads as read-write
    (short,) = parse_mountinfo("50 27 0:43 / /srv/x ro - tmpfs tmpfs\n")
    assert (short.read_only, short.super_read_only) == (True, False)
