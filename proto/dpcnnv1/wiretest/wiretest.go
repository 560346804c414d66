// Package wiretest reads what a gRPC peer says at the HTTP/2 level, for the
// tests of both ends of the Work stream: the coordinator's server and the
// worker's client must offer the same flow-control windows.
package wiretest

import (
	"net"
	"testing"

	"golang.org/x/net/http2"
)

// Windows sends our (empty) SETTINGS on conn, whose preface is already
// exchanged, then reads the peer's frames up to its acknowledgement of
// them, and returns the initial stream window the peer's SETTINGS gave and
// its connection window (65,535 bytes raised by its first WINDOW_UPDATE of
// stream 0). gRPC sends both before it acknowledges ours, so reading up to
// the acknowledgement sees all it says.
func Windows(t testing.TB, conn net.Conn) (stream, connection uint32) {
	t.Helper()
	fr := http2.NewFramer(conn, conn)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var settings, update bool
	connection = 65535
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the peer's frames: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				settings = true
				stream, _ = f.Value(http2.SettingInitialWindowSize)
				continue
			}
			if !settings {
				t.Fatal("the peer acknowledged our settings before sending its own")
			}
			if !update {
				t.Fatal("the peer did not raise the connection's flow-control window")
			}
			return stream, connection
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 && !update {
				update = true
				connection += f.Increment
			}
		}
	}
}
