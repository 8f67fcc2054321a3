// Package disktest gives tests a real filesystem of their own that they
// can fill or freeze: a small tmpfs, or an ext4 image on a loop device
// (tmpfs cannot be frozen). Both need root; without it the test is
// skipped, except under CI=true, where it fails.
package disktest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

func run(t testing.TB, name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Logf("%s %v: %v: %s", name, args, err, out)
	}
	return err
}

func unavailable(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("a filesystem of the test's own is needed: %s", why)
	}
	t.Skipf("a filesystem of the test's own is needed: %s", why)
}

// Small mounts a tmpfs of sizeKiB at a new directory and returns it; it is
// unmounted when the test ends.
func Small(t testing.TB, sizeKiB int) string {
	t.Helper()
	dir := t.TempDir()
	if os.Geteuid() != 0 {
		unavailable(t, "mounting needs root")
	}
	if err := run(t, "mount", "-t", "tmpfs", "-o", "size="+strconv.Itoa(sizeKiB)+"k,mode=0700", "tmpfs", dir); err != nil {
		unavailable(t, "mount -t tmpfs failed")
	}
	t.Cleanup(func() { run(t, "umount", "-l", dir) })
	return dir
}

// Freezable mounts an ext4 image of 32 MiB on a loop device at a new
// directory and returns it, with Freeze and Thaw for it; it is thawed and
// unmounted when the test ends.
func Freezable(t testing.TB) *Disk {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "mounting needs root")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	dir := t.TempDir()
	if err := run(t, "truncate", "-s", "32M", img); err != nil {
		t.Fatal(err)
	}
	if err := run(t, "mkfs.ext4", "-q", "-F", img); err != nil {
		unavailable(t, "mkfs.ext4 failed")
	}
	if err := run(t, "mount", "-o", "loop", img, dir); err != nil {
		unavailable(t, "mount -o loop failed")
	}
	d := &Disk{t: t, Dir: dir}
	t.Cleanup(func() {
		d.Thaw()
		run(t, "umount", "-l", dir)
	})
	return d
}

// Disk is a mounted filesystem the test may freeze.
type Disk struct {
	t      testing.TB
	Dir    string
	frozen bool
}

// Freeze suspends every write to the filesystem until Thaw.
func (d *Disk) Freeze() {
	d.t.Helper()
	if err := run(d.t, "fsfreeze", "-f", d.Dir); err != nil {
		d.t.Fatal("fsfreeze -f failed")
	}
	d.frozen = true
}

// Thaw lets writes go on.
func (d *Disk) Thaw() {
	if d.frozen {
		run(d.t, "fsfreeze", "-u", d.Dir)
		d.frozen = false
	}
}
