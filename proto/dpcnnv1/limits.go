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
