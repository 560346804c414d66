package job

import (
	"errors"
	"fmt"

	"github.com/dpcnn/dpcnn/dataset"
	"github.com/dpcnn/dpcnn/model"
)

// Data is what a job is checked against before anything runs: the shape of
// the images and the label count of the data set the workers hold, and its
// sizes. Validate checks a spec on its own; CheckData checks that it fits
// this data and the wire, so that a job that could only fail on a worker
// (a label outside the network's classes, an image of another shape, a
// parameter vector no message can carry) is refused at submission.
type Data struct {
	Height, Width, Channels int
	// Classes is the number of labels: every label is below it.
	Classes           int
	TrainLen, TestLen int
}

// DataOf describes a training set and its test set (nil: no test set).
func DataOf(train, test *dataset.Set) Data {
	d := Data{Height: train.Rows, Width: train.Cols, Channels: 1, Classes: train.Classes, TrainLen: train.Len()}
	if test != nil {
		d.Classes = max(d.Classes, test.Classes)
		d.TestLen = test.Len()
	}
	return d
}

// MNIST is the data set of every job today: 28×28 grey images of the digits
// 0 to 9, 60,000 for training and 10,000 for testing.
var MNIST = Data{Height: 28, Width: 28, Channels: 1, Classes: dataset.MNISTClasses, TrainLen: 60000, TestLen: 10000}

// Wire limits of a job. A step's parameters travel to each worker in one
// Assignment and a subtree's gradient comes back in one WorkResult, 4 bytes
// per parameter; the spec travels with a job's first assignment and is
// stored in etcd, whose requests are limited to 1.5 MiB by default.
const (
	// MaxMessageSize is the transports' message limit,
	// dpcnnv1.MaxMessageSize (TestMaxMessageSizeIsTheWires holds them
	// equal): the job rules name the number rather than import the wire's
	// generated code, so the training core that uses them stays free of
	// gRPC.
	MaxMessageSize = 256 << 20
	// MaxSpecBytes bounds a job spec's canonical JSON.
	MaxSpecBytes = 1 << 20
	// messageHeadroom is what an Assignment or a WorkResult holds besides
	// the parameter vector: ids, step numbers, the spec on a first
	// assignment, framing. The sample indices (at most 5 bytes each as
	// varints) are counted separately.
	messageHeadroom = MaxSpecBytes + 64<<10
)

// MaxParams returns the most parameters a job of global batch batch may
// have for its parameters and gradients to fit one message of
// MaxMessageSize.
func MaxParams(batch int) int {
	return max(0, (MaxMessageSize-messageHeadroom-5*batch)/4)
}

// CheckData reports every rule of the spec (after WithDefaults and
// Validate) that the data set or the wire breaks, joined; each error names
// the rule and both values.
func (s Spec) CheckData(d Data) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if n := len(s.JSON()); n > MaxSpecBytes {
		bad("job: spec is %d bytes of JSON, more than the %d a job spec may have (it travels to every worker and is stored in etcd)", n, MaxSpecBytes)
	}
	if net, err := s.Model(); err == nil {
		if err := checkShape(net, d); err != nil {
			errs = append(errs, err)
		}
		if params, err := net.ParamCount(); err == nil {
			if limit := MaxParams(s.Batch); params > limit {
				bad("job: network has %d parameters (%d MiB as float32), more than the %d that fit one message of %d MiB with a batch of %d", params, params*4>>20, limit, MaxMessageSize>>20, s.Batch)
			}
		}
	}
	if s.TrainLimit > d.TrainLen {
		bad("job: trainLimit %d exceeds the data set's %d training samples", s.TrainLimit, d.TrainLen)
	}
	if s.TestLimit > d.TestLen {
		bad("job: testLimit %d exceeds the data set's %d test samples", s.TestLimit, d.TestLen)
	}
	if train := s.TrainSamples(d); s.Batch > train {
		bad("job: batch %d exceeds the %d training samples it draws from", s.Batch, train)
	}
	return errors.Join(errs...)
}

// TrainSamples is the number of training samples the job uses: TrainLimit
// when it is set and smaller than the data set.
func (s Spec) TrainSamples(d Data) int {
	if s.TrainLimit > 0 && s.TrainLimit < d.TrainLen {
		return s.TrainLimit
	}
	return d.TrainLen
}

// CheckModelData reports whether a trained network can be evaluated on d:
// its input must be d's image shape and its classes d's label count.
func CheckModelData(net model.Spec, d Data) error { return checkShape(net, d) }

// checkShape is the input and class rules of CheckData.
func checkShape(net model.Spec, d Data) error {
	var errs []error
	if in := net.Input; in.Height != d.Height || in.Width != d.Width || in.Channels != d.Channels {
		errs = append(errs, fmt.Errorf("job: network input %dx%dx%d (height x width x channels) does not match the data set's images, %dx%dx%d", in.Height, in.Width, in.Channels, d.Height, d.Width, d.Channels))
	}
	if net.Classes != d.Classes {
		errs = append(errs, fmt.Errorf("job: network has %d classes, the data set's labels have %d (0 to %d): classes must equal the label count", net.Classes, d.Classes, d.Classes-1))
	}
	return errors.Join(errs...)
}
