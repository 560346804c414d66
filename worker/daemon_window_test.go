package worker

import (
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1/wiretest"
)

// TestDaemonGivesLargeFlowControlWindows reads the HTTP/2 settings a worker
// sends when it connects to its coordinator: the stream window and the
// connection window are dpcnnv1.WindowSize, so the parameters of a step
// (hundreds of kilobytes) arrive in one flight instead of waiting a round
// trip for each 64 KiB window update.
func TestDaemonGivesLargeFlowControlWindows(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	train, test := tinySets(t)
	startWorker(t, testWorkerConfig(t, "w-window", lis.Addr().String(), train, test))
	conn, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangGuard))
	preface := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(conn, preface); err != nil || string(preface) != http2.ClientPreface {
		t.Fatalf("client preface %q, %v", preface, err)
	}
	if stream, connection := wiretest.Windows(t, conn); stream != dpcnnv1.WindowSize || connection != dpcnnv1.WindowSize {
		t.Errorf("stream window %d, connection window %d; want both %d", stream, connection, dpcnnv1.WindowSize)
	}
}
