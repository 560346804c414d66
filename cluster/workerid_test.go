package cluster

import (
	"strings"
	"testing"
)

func TestCheckWorkerID(t *testing.T) {
	for _, ok := range []string{"w1", "worker-0.pod_a", strings.Repeat("x", 63)} {
		if err := CheckWorkerID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for id, want := range map[string]string{"": "1 to 63", strings.Repeat("x", 64): "1 to 63", "w/1": "[a-zA-Z0-9._-]", "w 1": "[a-zA-Z0-9._-]", "wé": "[a-zA-Z0-9._-]"} {
		if err := CheckWorkerID(id); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want %q", id, err, want)
		}
	}
}

// A default id is valid whatever the host name.
func TestDefaultWorkerID(t *testing.T) {
	for host, want := range map[string]string{"node-1": "node-1-42", "": "worker-42", "a b/c": "a-b-c-42"} {
		if got := DefaultWorkerID(host, 42); got != want {
			t.Errorf("host %q: %q, want %q", host, got, want)
		}
	}
	long := DefaultWorkerID(strings.Repeat("h", 100)+"é", 123456)
	if err := CheckWorkerID(long); err != nil || !strings.HasSuffix(long, "-123456") {
		t.Errorf("long host: %q, %v", long, err)
	}
}
