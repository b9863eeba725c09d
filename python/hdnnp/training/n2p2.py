"""n2p2's training keywords in input.nn -> TrainingConfig, so an n2p2 set-up runs unchanged."""
from __future__ import annotations

import os
import warnings
from typing import Dict, List, Tuple

from ..keywords import read_keyword_lines, read_keywords  # noqa: F401 (their home is hdnnp.keywords)
from .kalman import KalmanSettings
from .trainer import TrainingConfig

# keyword -> (TrainingConfig attribute or "kalman.<attr>", type)
_MAP = {
    "epochs": ("epochs", int),
    "random_seed": ("seed", int),
    "test_fraction": ("test_fraction", float),
    # hdnnp's own keywords (n2p2 warns about them and goes on)
    "validation_fraction": ("validation_fraction", float),
    "selection_energy_weight": ("selection_energy_weight", float),
    "selection_force_weight": ("selection_force_weight", float),
    "learning_rate_decay": ("learning_rate_decay", float),
    "energy_weight": ("energy_weight", float),
    "stress_weight": ("stress_weight", float),
    "early_stopping_patience": ("patience", int),
    "memory_budget_mb": ("memory_budget_mb", float),
    "descriptor_precision": ("descriptor_precision", str),
    "fit_offsets": ("fit_offsets", lambda v: bool(int(float(v)))),
    "weights_init": ("init", str),
    "time_limit": ("time_limit", float),
    "force_weight": ("force_weight", float),
    "energy_fraction": ("energy_fraction", float),            # (n2p2: short_energy_fraction)
    "force_fraction": ("force_fraction", float),              # (n2p2: short_force_fraction)
    "rmse_threshold_energy": ("energy_threshold", float),     # (n2p2: short_energy_error_threshold)
    "rmse_threshold_force": ("force_threshold", float),       # (n2p2: short_force_error_threshold)
    "rmse_threshold_trials": ("threshold_trials", int),
    "charge_fraction": ("charge_fraction", float),
    "weights_min": ("weights_min", float),
    "weights_max": ("weights_max", float),
    "gradient_adam_eta": ("learning_rate", float),
    "gradient_adam_beta1": ("beta1", float),
    "gradient_adam_beta2": ("beta2", float),
    "gradient_adam_epsilon": ("epsilon", float),
    "kalman_type": ("kalman.kalman_type", int),
    "kalman_epsilon": ("kalman.epsilon", float),
    "kalman_q0": ("kalman.q0", float),
    "kalman_qtau": ("kalman.qtau", float),
    "kalman_qmin": ("kalman.qmin", float),
    "kalman_eta": ("kalman.eta", float),
    "kalman_etatau": ("kalman.etatau", float),
    "kalman_etamax": ("kalman.etamax", float),
    "kalman_lambda_short": ("kalman.lambda_", float),
    "kalman_nue_short": ("kalman.nu", float),
    "kalman_decoupling": ("kalman.decoupling", str),          # hdnnp's own: none | element | layer
}
# Accepted with no effect here (parallelisation and output details of n2p2's implementation).
_IGNORED = {
    "parallel_mode", "jacobian_mode", "update_strategy", "task_batch_size_force",
    "memorize_symfunc_results", "write_trainpoints", "write_trainforces", "write_weights_epoch",
    "write_neuronstats", "write_trainlog", "main_error_metric", "repeated_energy_update", "gradient_eta",
    "precondition_weights", "force_energy_ratio", "use_old_weights_short", "write_traincharges",
    "task_batch_size_charge", "use_old_weights_charge",
}


# Keywords that steer training only (the rest describe the potential itself).
TRAINING_KEYWORDS = set(_MAP) | _IGNORED | {
    "updater_type", "gradient_type", "selection_mode", "selection_mode_energy", "selection_mode_force",
    "selection_mode_charge", "use_short_forces", "nguyen_widrow_weights_short", "nguyen_widrow_weights_charge",
    "rmse_threshold", "rmse_threshold_energy", "rmse_threshold_force", "rmse_threshold_charge",
    "rmse_threshold_trials_energy", "rmse_threshold_trials_force", "rmse_threshold_trials_charge",
    "normalize_data_set", "random_seed", "energy_fraction", "force_fraction", "initial_hardness"}


def model_differences(path_a: str, path_b: str) -> List[str]:
    """The keywords describing the potential (not its training) that two input.nn files give
    differently (in value or order of repeated lines)."""
    a, b = read_keyword_lines(path_a), read_keyword_lines(path_b)
    keys = (set(a) | set(b)) - TRAINING_KEYWORDS
    return sorted(k for k in keys if [v for _, v in a.get(k, [])] != [v for _, v in b.get(k, [])])


def config_from_input_nn(directory: str, stage: int = 0, **overrides) -> TrainingConfig:
    """TrainingConfig from input.nn; `stage` 1 reads the 4G charge-stage variants of keywords
    (nguyen_widrow_weights_charge instead of nguyen_widrow_weights_short)."""
    path = os.path.join(directory, "input.nn")
    kw = read_keywords(path)
    cfg = TrainingConfig()
    kal = KalmanSettings()
    for key, (attr, typ) in _MAP.items():
        if key not in kw:
            continue
        no, args = kw[key]
        if not args:
            raise ValueError(f"{path}:{no}: keyword {key} needs a value")
        try:
            val = typ(float(args[0])) if typ is int else typ(args[0])
            if key == "weights_init" and val not in ("uniform", "glorot", "nguyen-widrow", "n2p2"):
                raise ValueError(val)
            if key == "kalman_decoupling" and val not in ("none", "element", "layer"):
                raise ValueError(val)
            if key == "descriptor_precision" and val not in ("float64", "float32"):
                raise ValueError(val)
        except ValueError:
            raise ValueError(f"{path}:{no}: cannot read {args[0]!r} as the value of {key}") from None
        if attr.startswith("kalman."):
            setattr(kal, attr.split(".", 1)[1], val)
        else:
            setattr(cfg, attr, val)
    cfg.kalman = kal
    if "updater_type" in kw:
        no, args = kw["updater_type"]
        ut = int(args[0])
        if ut == 1:
            cfg.optimizer = "kalman"
        elif ut == 0:
            gt = int(kw.get("gradient_type", (0, ["1"]))[1][0])
            if gt != 1:
                raise ValueError(f"{path}:{kw['gradient_type'][0]}: gradient_type {gt} (fixed-step gradient "
                                 f"descent) is not supported; use gradient_type 1 (Adam)")
            cfg.optimizer = "adam"
        else:
            raise ValueError(f"{path}:{no}: updater_type must be 0 (gradient descent) or 1 (Kalman filter)")
    if "selection_mode" in kw:
        no, args = kw["selection_mode"]
        modes = {"0": "random", "1": "sort", "2": "threshold"}
        if args[0] not in modes:
            raise ValueError(f"{path}:{no}: selection_mode must be 0, 1 or 2")
        cfg.selection = modes[args[0]]
    cfg.use_forces = "use_short_forces" in kw
    if "weights_init" in kw:
        pass
    elif f"nguyen_widrow_weights_{'charge' if stage == 1 else 'short'}" in kw:
        cfg.init = "nguyen-widrow"
    else:  # what nnp-train does then (weights_min/max bound the uniform draw)
        cfg.init = "n2p2"
    if "task_batch_size_energy" in kw:
        no, args = kw["task_batch_size_energy"]
        if cfg.optimizer == "adam":  # n2p2: the energy candidates combined in one gradient update
            try:
                cfg.batch_size = int(args[0])
            except (IndexError, ValueError):
                raise ValueError(f"{path}:{no}: task_batch_size_energy needs an integer") from None
            if cfg.batch_size < 1:
                raise ValueError(f"{path}:{no}: task_batch_size_energy must be >= 1")
        else:
            warnings.warn(f"{path}:{no}: task_batch_size_energy has no effect with the Kalman filter in hdnnp's "
                          f"trainer (one observation per update)", stacklevel=2)
    for key in sorted(set(kw) & _IGNORED):
        warnings.warn(f"{path}:{kw[key][0]}: {key} has no effect in hdnnp's trainer", stacklevel=2)
    for k, v in overrides.items():
        if v is not None:
            setattr(cfg, k, v)
    return cfg


def apply_settings(cfg: TrainingConfig, items) -> TrainingConfig:
    """`KEY=VALUE` strings onto a TrainingConfig (any field; `kalman.FIELD` for the Kalman
    filter's), with the field's type; an unknown key is an error listing the known ones."""
    from dataclasses import fields

    for item in items or []:
        if "=" not in item:
            raise ValueError(f"--set {item!r}: expected KEY=VALUE")
        key, value = (t.strip() for t in item.split("=", 1))
        target = cfg
        if key.startswith("kalman."):
            target, key = cfg.kalman, key[len("kalman."):]
        known = {f.name: f for f in fields(target) if f.name != "kalman"}
        if key not in known:
            raise ValueError(f"--set {item!r}: unknown setting {key!r}; known: {', '.join(sorted(known))}"
                             + (", kalman.<field>" if target is cfg else ""))
        current = getattr(target, key)
        if known[key].default is None:  # Optional settings (patience): None or an int
            current = 0 if value.lower() != "none" else None
        try:
            if current is None:
                val = None
            elif isinstance(current, bool):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                val = value.lower() in ("1", "true", "yes")
            elif isinstance(current, int):
                val = int(value)
            elif isinstance(current, float):
                val = float(value)
            else:
                val = value
        except ValueError:
            raise ValueError(f"--set {item!r}: {value!r} is not a valid {type(current).__name__}") from None
        setattr(target, key, val)
    return cfg
