package dataset

import "fmt"

// MNISTClasses is the number of classes of MNIST: the digits 0 to 9.
const MNISTClasses = 10

// Set is a labelled image set: image i has label Labels[i], and every label
// is below Classes.
type Set struct {
	Images
	Labels  []uint8
	Classes int
}

// NewSet pairs images with their labels, checking that the counts agree and
// every label is below classes. name is used in errors only.
func NewSet(name string, images *Images, labels []uint8, classes int) (*Set, error) {
	if images == nil {
		return nil, fmt.Errorf("dataset: %s: no images", name)
	}
	if len(images.Pixels) != images.N*images.Rows*images.Cols {
		return nil, fmt.Errorf("dataset: %s: %d pixels for %d images of %dx%d", name, len(images.Pixels), images.N, images.Rows, images.Cols)
	}
	if len(labels) != images.N {
		return nil, fmt.Errorf("dataset: %s: %d images but %d labels", name, images.N, len(labels))
	}
	if classes < 1 || classes > 256 {
		return nil, fmt.Errorf("dataset: %s: %d classes, want 1 to 256", name, classes)
	}
	for i, l := range labels {
		if int(l) >= classes {
			return nil, fmt.Errorf("dataset: %s: label %d of sample %d is not below %d classes", name, l, i, classes)
		}
	}
	return &Set{Images: *images, Labels: labels, Classes: classes}, nil
}

// LoadSet reads an IDX image file and its IDX label file (raw or gzip) as a
// set of MNISTClasses classes.
func LoadSet(imagesPath, labelsPath string) (*Set, error) {
	images, err := ReadImagesFile(imagesPath)
	if err != nil {
		return nil, err
	}
	labels, err := ReadLabelsFile(labelsPath)
	if err != nil {
		return nil, err
	}
	return NewSet(imagesPath+" + "+labelsPath, images, labels, MNISTClasses)
}

// Len returns the number of samples.
func (s *Set) Len() int { return s.N }

// CheckIndices reports the first index that is not a sample of s, for
// indices that come from outside the process (Fill panics on them).
func (s *Set) CheckIndices(indices []int32) error {
	for i, idx := range indices {
		if idx < 0 || int(idx) >= s.N {
			return fmt.Errorf("dataset: index %d at position %d out of range [0, %d)", idx, i, s.N)
		}
	}
	return nil
}
