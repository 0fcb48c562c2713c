"""Outputs from strangers' inputs: no write through a planted link, no output over an input, nothing half-written.

Every command refuses an output path that is one of its inputs (the same file by inode, or a link to it),
and writes a report through a fresh temporary renamed over a regular file only: an existing symlink,
FIFO or device at the output path is refused in one line. The board's build_on_device.sh writes its
results fresh and refuses a link or non-file anywhere in the bundle.
"""

import os

from test_bundle import bundle_copy, bundled, run_device_script  # noqa: F401 - fixtures


def test_device_script_refuses_a_result_file_linked_outside(bundle_copy, tmp_path):  # noqa: F811
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (bundle_copy / "results").mkdir(exist_ok=True)
    os.symlink(outside, bundle_copy / "results" / "sha256sum.txt")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "results/sha256sum.txt in the bundle is a link" in done.stderr, done.stderr
    assert outside.read_text() == "precious\n" and not (tmp_path / "trtexec.log").exists()


def test_device_script_refuses_a_fifo_or_link_anywhere_in_the_bundle(bundle_copy, tmp_path):  # noqa: F811
    os.mkfifo(bundle_copy / "results.fifo")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "results.fifo in the bundle is a link or not a plain file" in done.stderr, done.stderr
    os.remove(bundle_copy / "results.fifo")
    os.symlink("/etc/hostname", bundle_copy / "extra")
    done = run_device_script(bundle_copy, tmp_path)
    assert done.returncode == 2 and "extra in the bundle is a link" in done.stderr, done.stderr
