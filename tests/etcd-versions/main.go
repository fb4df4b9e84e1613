// Command etcd is one binary holding a real etcd member and a real etcdctl of
// the release pinned in go.mod: invoked as `etcdctl` (by name, through a
// symlink) it is etcdctl, otherwise it is the etcd server. The test harness
// builds it per release with scripts/etcd-build.sh.
package main

import (
	"os"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	if strings.HasPrefix(filepath.Base(os.Args[0]), "etcdctl") {
		ctlv3.MustStart()
		return
	}
	etcdmain.Main(os.Args)
}
