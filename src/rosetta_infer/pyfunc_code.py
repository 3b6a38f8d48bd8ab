"""The file MLflow stores as the pyfunc model's code (MLflow's "models from code", no pickle): loading the
registered model runs it, and it names the model class (``rosetta_infer.pyfunc``)."""
from mlflow.models import set_model

from rosetta_infer.pyfunc import OnnxRecognizerModel

set_model(OnnxRecognizerModel())
