package cluster

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxWorkerIDLen is the longest worker id: a DNS label, so that a pod
// name fits.
const MaxWorkerIDLen = 63

// CheckWorkerID checks the rule of a worker's id (JoinRequest.worker_id,
// the key of its registration): 1 to 63 characters of [a-zA-Z0-9._-].
func CheckWorkerID(id string) error {
	if len(id) < 1 || len(id) > MaxWorkerIDLen {
		return fmt.Errorf("worker id %q: want 1 to %d characters", id, MaxWorkerIDLen)
	}
	for _, r := range id {
		if !workerIDChar(r) {
			return fmt.Errorf("worker id %q: want only [a-zA-Z0-9._-]", id)
		}
	}
	return nil
}

func workerIDChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// DefaultWorkerID is host-pid made into a valid worker id: characters the
// rule refuses become '-', and the host is cut so that the whole fits.
func DefaultWorkerID(host string, pid int) string {
	if host == "" {
		host = "worker"
	}
	host = strings.Map(func(r rune) rune {
		if workerIDChar(r) {
			return r
		}
		return '-'
	}, host)
	suffix := "-" + strconv.Itoa(pid)
	return host[:min(len(host), MaxWorkerIDLen-len(suffix))] + suffix
}
