//go:build race

package coordinator

// raceDetector reports a build with -race, which runs this package's
// embedded etcd and coordinators several times slower.
const raceDetector = true
