"""Training: the state pytree, pure compiled steps, the loop, checkpoints and run records."""
from hepjax.train.state import Graphdefs, TrainState, count_params, init_ensemble, init_state, split_model
from hepjax.train.step import Task, compile_steps, eval_step_fn, pmap_train_step, train_step_fn

__all__ = ["Graphdefs", "Task", "TrainState", "compile_steps", "count_params", "eval_step_fn",
           "init_ensemble", "init_state", "pmap_train_step", "split_model", "train_step_fn"]
