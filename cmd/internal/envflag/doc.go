// Package envflag gives the flags of the dpcnn commands (cnnctl,
// coordinator, worker) their environment variables, one way for all three:
// a variable that is set and not empty supplies the value of a flag the
// command line leaves unset, parsed as the flag parses its values, so a
// malformed value is refused naming the variable. Containers and
// Kubernetes manifests configure the daemons this way.
//
// It imports no package of this module; only the three mains use it.
package envflag
