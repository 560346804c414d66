package coordinator

import (
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/dpcnn/dpcnn/proto/dpcnnv1"
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
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	stream, connIncrement := readWindows(t, fr)
	if stream != dpcnnv1.WindowSize {
		t.Errorf("stream window %d, want %d", stream, dpcnnv1.WindowSize)
	}
	// A connection window starts at 65,535 bytes; the server raises it with
	// a window update on stream 0.
	if got := 65535 + connIncrement; got != dpcnnv1.WindowSize {
		t.Errorf("connection window %d, want %d", got, dpcnnv1.WindowSize)
	}
}

// readWindows reads the peer's frames up to its acknowledgement of our
// SETTINGS and returns the initial stream window its SETTINGS gave and the
// increment of its first WINDOW_UPDATE of the connection (stream 0). gRPC
// sends both before it acknowledges ours, so reading up to the
// acknowledgement sees all it says.
func readWindows(t *testing.T, fr *http2.Framer) (streamWindow, connIncrement uint32) {
	t.Helper()
	var settings, update bool
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the peer's frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				settings = true
				streamWindow, _ = f.Value(http2.SettingInitialWindowSize)
				continue
			}
			if !settings {
				t.Fatal("the peer acknowledged our settings before sending its own")
			}
			if !update {
				t.Fatal("the peer did not raise the connection's flow-control window")
			}
			return streamWindow, connIncrement
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 && !update {
				update, connIncrement = true, f.Increment
			}
		}
	}
}
