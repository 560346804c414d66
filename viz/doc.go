// Package viz draws pictures of training as PNG: the first convolution's
// filters, every layer's feature maps for one image, misclassified test
// images, the confusion matrix, and training curves (with gonum's plot).
// Each picture is a pure function of its inputs, so the same checkpoint
// gives the same bytes.
//
// It may import model (for activations' shapes), gonum.org/v1/plot and
// golang.org/x/image (for text); nothing of the cluster.
package viz
