"""HyperbolicVAE on scikit-image's `lfw_subset` faces (the paper's Celeb-A experiment, small).

Same as `keras-hyperbolic train vae-faces`: 80 training / 20 held-out face
crops, the digits task's two-stage training and report. Measured: PCA wins
here (80 training faces are too few; the network overfits).

Run:
    python examples/vae_faces.py
"""

from common import run  # examples/common.py: first, it turns oneDNN on before TensorFlow loads

from keras_hyperbolic.tasks.vae import train_vae_faces  # noqa: E402

if __name__ == "__main__":
    run(train_vae_faces, __doc__, "outputs/vae_faces")
