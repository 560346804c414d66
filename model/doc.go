// Package model builds convolutional networks from a declarative Spec and
// trains them on a kernels.Backend: layers with forward and backward passes,
// one named and ordered parameter set, the optimizers of the book (SGD,
// Momentum, AdaGrad, Adam), checkpoints and ONNX export. A Network keeps
// its tensors on the backend's kernels.Device (host memory on the CPU, GPU
// memory on CUDA), so the same network runs on every backend; it imports
// kernels, never a backend's own package.
//
// Everything here is generic over the element type: networks train in
// float32, and the same code runs in float64 on the reference backend for the
// gradient checks. The package does no I/O except through io.Reader and
// io.Writer.
package model
