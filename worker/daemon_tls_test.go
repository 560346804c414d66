package worker_test

import (
	"context"
	"strings"
	"testing"

	"github.com/dpcnn/dpcnn/kernels"
	"github.com/dpcnn/dpcnn/worker"
)

// A worker without transport credentials dials only loopback
// coordinators: another address is refused before anything is sent.
func TestDaemonRefusesPlaintextElsewhere(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), hangGuard)
	defer cancel()
	b := kernels.NewCPU(1)
	defer b.Close()
	err := worker.Run(ctx, worker.DaemonConfig{
		ID: "w-plain", Coordinator: "10.0.0.7:7070", Backend: b, ImagesPerSec: -1, CacheDir: t.TempDir(),
	})
	if err == nil || !strings.Contains(err.Error(), "plaintext is allowed only on a loopback address") {
		t.Fatalf("Run toward 10.0.0.7 in plaintext: %v", err)
	}
}
