package coordinator

import (
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
	"github.com/dpcnn/dpcnn/proto/dpcnnv1/wiretest"
)

// TestServerGivesLargeFlowControlWindows reads the HTTP/2 settings the
// coordinator's gRPC server sends a new connection: the stream window and
// the connection window are dpcnnv1.WindowSize, so a worker's gradient of
// hundreds of kilobytes goes in one flight instead of waiting a round trip
// for each 64 KiB window update.
func TestServerGivesLargeFlowControlWindows(t *testing.T) {
	cli := testEtcd(t)
	c := startCoordinator(t, cli, "c-window", t.TempDir())
	conn, err := net.Dial("tcp", c.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangGuard))
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if stream, connection := wiretest.Windows(t, conn); stream != dpcnnv1.WindowSize || connection != dpcnnv1.WindowSize {
		t.Errorf("stream window %d, connection window %d; want both %d", stream, connection, dpcnnv1.WindowSize)
	}
}
