package worker

import (
	"fmt"
	"runtime/debug"
)

// ComputeFault is a panic inside a computation (a kernel's assertion, an
// index out of range) recovered at the Computer's boundary. It fails the
// assignment that caused it instead of the worker process: one bad job, or
// one bad input, must not take down every worker that takes it. Device
// failures do not take this path: the network returns them as errors (the
// device latches them, model.Network returns them from Loss, Backward and
// Predict); the boundary is the safety net for what is left.
type ComputeFault struct {
	What  string // what was being computed, e.g. "gradients of step 3"
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack at the panic, for the log
}

func (f *ComputeFault) Error() string {
	return fmt.Sprintf("worker: fault in %s: %v", f.What, f.Value)
}

// Unwrap returns the panic's value when it is an error (a runtime error,
// a *cuda.Error from the host-slice methods of the CUDA backend), so
// callers can inspect it with errors.As.
func (f *ComputeFault) Unwrap() error {
	err, _ := f.Value.(error)
	return err
}

// recoverFault, deferred, turns a panic into a *ComputeFault in *err.
func recoverFault(what string, err *error) {
	if r := recover(); r != nil {
		*err = &ComputeFault{What: what, Value: r, Stack: debug.Stack()}
	}
}
