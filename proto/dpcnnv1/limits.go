package dpcnnv1

// ChunkSize is the most bytes a sender puts in one FileChunk. It keeps each
// message far below gRPC's default 4 MiB limit while making a 50 MB file
// only about 50 messages.
const ChunkSize = 1 << 20

// MaxMessageSize is the receive limit both ends of the services should set
// (grpc.MaxRecvMsgSize on the server, grpc.MaxCallRecvMsgSize on clients).
// An Assignment carries the whole parameter vector and a WorkResult a whole
// gradient, 4 bytes per parameter, which outgrows gRPC's default 4 MiB at
// about a million parameters; 256 MiB admits networks of some 64 million.
// The job rules check networks against the same number, job.MaxMessageSize
// (a test in job holds the two equal).
const MaxMessageSize = 256 << 20

// WindowSize is the HTTP/2 flow-control window both ends of a Work stream
// should give (grpc.InitialWindowSize and grpc.InitialConnWindowSize on the
// server, the WithInitial… dial options on workers). gRPC's default starts
// at 64 KiB and grows only with its bandwidth-delay estimate, which bursty
// traffic (one parameter vector, then tens of milliseconds of silence, then
// one gradient) keeps small: a 494 KB message then waits for about eight
// window updates, one round trip each. A window of 8 MiB lets a whole
// message of a network of 2 million parameters go at once; it is a limit,
// not an allocation.
const WindowSize = 8 << 20
