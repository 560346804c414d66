// Package job defines a training job as users write it — the network, the
// optimizer, the schedule, the data and its augmentation, the seed — and
// validates it before anything runs: on its own (Spec.Validate) and against
// a data set and the wire (Spec.CheckData, CheckModelData). The same Spec
// is read from cnnctl flags, from a YAML or JSON job file, and (in the
// distributed trainer) travels to the coordinator and into checkpoints, so
// a job's result is a pure function of its Spec. Spec.Schedule is the one
// plan of a job's steps and epochs.
//
// It imports model and dataset of this module (and sigs.k8s.io/yaml), and
// nothing that runs: no gRPC, etcd or protobuf, so the training core, the
// CLI and the wire's adapters can all depend on it.
package job
