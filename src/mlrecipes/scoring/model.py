"""The model a scoring run applies: which registered version, loaded as a pyfunc, and the input
schema it was trained on (the columns it needs and the types they may be read as)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pyarrow as pa

from mlrecipes.errors import UserError, one_line, require, see


@dataclass
class Model:
    name: str
    version: str
    run_id: str
    uri: str
    task: str  # classification | regression
    class_names: list[str]
    features: list[str] | None  # table models: input columns; None: an image model (an array)
    input_types: dict[str, str] = field(default_factory=dict)  # feature -> MLflow type (double, string)
    pyfunc: object = None
    categories: dict[str, list[str]] = field(default_factory=dict)  # string feature -> its training categories
    # The window features the model was trained with (FeatureSet.to_dict): scoring computes them from
    # this definition, the model's own, never from today's config. None: the table's columns as stored.
    feature_set: dict | None = None

    @property
    def raw_features(self) -> list[str]:
        """The input columns read from the table as they are: the features minus the computed ones."""
        computed = {f["name"] for f in (self.feature_set or {}).get("define", [])}
        return [f for f in self.features or [] if f not in computed]


def resolve_model(spec: str, registered: str) -> tuple[str, str]:
    """`@alias` / `<version>` of the config's registered model, or `models:/name/version|@alias`:
    (name, `@alias` or version)."""
    spec = str(spec or "@champion").strip()
    if spec.startswith("models:/"):
        rest = spec.removeprefix("models:/").strip("/")
        if "@" in rest:
            name, alias = rest.split("@", 1)
            return name, "@" + alias
        name, sep, version = rest.rpartition("/")
        require(bool(sep and name and version), f"model URI {spec!r}: expected models:/<name>/<version> "
                                                "or models:/<name>@<alias>")
        return name, version
    require("/" not in spec and ":" not in spec,
            f"model {spec!r}: use @<alias>, a version number or models:/<name>/<version|@alias>")
    return registered, spec if spec.isdigit() else "@" + spec.lstrip("@")


def no_alias(client, name: str, alias: str) -> str:
    """Why no version carries the alias, and what to do: train, promote, or score a version."""
    hint = see("scoring-finds-no-champion")
    try:
        versions = client.search_model_versions(f"name = '{name}'")
    except Exception:  # noqa: BLE001 - the message stays useful without the count
        versions = []
    if not versions:
        return f"no version of {name} has alias {alias}; train it first{hint}"
    latest = max(versions, key=lambda v: int(v.version))
    verdict = latest.tags.get("gate.decision")
    said = f", {verdict}: {latest.tags.get('gate.reason', '')}" if verdict else ""
    return (f"no version of {name} has alias {alias} ({len(versions)} registered; the latest, version "
            f"{latest.version}{said}); promote one with `mlrecipes promote {name} {latest.version}"
            f"{'' if alias == 'champion' else f' --alias {alias}'}` or score "
            f"a version with -P model={latest.version}{hint}")


def load_model(spec: str, registered: str, data_cfg) -> Model:
    import mlflow
    from mlflow.exceptions import MlflowException

    name, which = resolve_model(spec, registered)
    client = mlflow.MlflowClient()
    try:
        if which.startswith("@"):
            version = client.get_model_version_by_alias(name, which[1:])
        else:
            require(which.isdigit(), f"model version {which!r} of {name} is not a number")
            version = client.get_model_version(name, which)
    except MlflowException as exc:
        if which.startswith("@"):
            raise UserError(no_alias(client, name, which[1:])) from None
        raise UserError(f"model version {name}/{which} does not exist ({one_line(exc.message)})") from None
    uri = f"models:/{name}/{version.version}"
    try:
        info = mlflow.models.Model.load(uri)
        loaded = mlflow.pyfunc.load_model(uri)
    except (MlflowException, OSError) as exc:
        raise UserError(f"cannot load {uri}: {one_line(str(exc))}") from None
    flavor = info.flavors.get("python_function", {}).get("config") or {}
    inputs = info.signature.inputs if info.signature is not None else None
    if flavor.get("features"):  # a table model (mlrecipes.table_model)
        types = {c.name: c.type.name for c in inputs.inputs} if inputs is not None and inputs.has_input_names() else {}
        categories = {str(k): [str(c) for c in v] for k, v in (flavor.get("categories") or {}).items()}
        return Model(name, str(version.version), version.run_id, uri, str(flavor.get("task", "classification")),
                     [str(c) for c in flavor.get("class_names") or []], [str(f) for f in flavor["features"]],
                     types, loaded, categories, flavor.get("feature_set") or None)
    # An image model in its native flavor: (n, pixels) float32 in, class probabilities out.
    return Model(name, str(version.version), version.run_id, uri, "classification",
                 [str(c) for c in (data_cfg.get("class_names") or range(10))], None, {}, loaded)


# MLflow column type -> the Arrow type rows are handed over as, and which input types widen to it safely.
_SAFE = {
    "double": (pa.float64(), lambda t: pa.types.is_integer(t) or pa.types.is_floating(t)
               or pa.types.is_boolean(t) or pa.types.is_decimal(t) or pa.types.is_null(t)),
    "float": (pa.float32(), lambda t: pa.types.is_floating(t) or pa.types.is_integer(t) or pa.types.is_null(t)),
    "long": (pa.int64(), lambda t: pa.types.is_integer(t) or pa.types.is_boolean(t) or pa.types.is_null(t)),
    "integer": (pa.int32(), lambda t: t in (pa.int8(), pa.int16(), pa.int32(), pa.uint8(), pa.uint16())),
    "boolean": (pa.bool_(), lambda t: pa.types.is_boolean(t) or pa.types.is_null(t)),
    "string": (pa.string(), lambda t: pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)),
}


def check_schema(model: Model, schema: pa.Schema, describe: str) -> dict[str, pa.DataType]:
    """feature -> the type it is read as. Missing column: one line naming it; unsafe cast: one line."""
    out = {}
    for name in model.raw_features:
        require(name in schema.names, f"input column '{name}' is missing from {describe}: "
                                      f"model {model.name} version {model.version} needs it")
        kind = schema.field(name).type
        kind = kind.value_type if pa.types.is_dictionary(kind) else kind
        wanted = model.input_types.get(name, "string" if pa.types.is_string(kind) else "double")
        target, safe = _SAFE.get(wanted, (None, lambda t: False))
        require(target is not None and safe(kind),
                f"input column '{name}' is {kind}, the model needs {wanted}: not a safe cast")
        out[name] = target
    return out
