package loader

import "syscall"

// diskFree is the space an unprivileged user may still write in the file
// system of dir; ok is false when it cannot be read.
func diskFree(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return int64(st.Bavail) * st.Bsize, true
}
