"""HyperbolicVAE on scikit-image's `lfw_subset` faces (the paper's Celeb-A experiment, small).

Same as `keras-hyperbolic train vae-faces`: 80 training / 20 held-out face
crops, the digits task's two-stage training and report. Measured: PCA wins
here (80 training faces are too few; the network overfits).

Run:
    python examples/vae_faces.py
"""

import os

# oneDNN on before TensorFlow is imported, unless the user chose (keras_hyperbolic.runtime).
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from common import arguments  # noqa: E402  (examples/common.py)

from keras_hyperbolic.tasks.vae import train_vae_faces  # noqa: E402

if __name__ == "__main__":
    args = arguments(__doc__, "outputs/vae_faces")
    train_vae_faces(args.output, epochs=args.epochs, quick=args.quick, seed=args.seed,
                    verbose=args.verbose)
