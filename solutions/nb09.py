"""Reference solutions of notebook 9's exercises (speedrun: how fast can a CNN train), kept apart from the notebook.

Each name is the one the notebook's stub defines; ``cnncourse.exercises.nb09`` checks them.
"""
import torch


def tensor_batches(images, labels, batch_size, generator):
    """One permutation from the generator, cut into full chunks of batch_size (the rest dropped), one indexing each."""
    order = torch.randperm(len(images), generator=generator)
    full = len(order) // batch_size * batch_size
    return [(images[chunk], labels[chunk]) for chunk in order[:full].split(batch_size)]


def alternating_flip(images, first_mask, epoch):
    """first_mask in even epochs, its complement in odd ones; torch.where builds a new tensor."""
    mask = first_mask if epoch % 2 == 0 else ~first_mask
    return torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images)


def whitening_matrix(patches, eps=5e-4):
    """Eigenvectors of the covariance (eigh's columns), each divided by sqrt(eigenvalue + eps), as rows."""
    values, vectors = torch.linalg.eigh(torch.cov(patches.T))
    return (vectors / torch.sqrt(values + eps)).T


def tta_logits(model, images):
    """Eval mode, no gradients, the mean of the logits of the images and of their mirror images."""
    model.eval()
    with torch.no_grad():
        return (model(images) + model(images.flip(-1))) / 2
