"""What jobs work on: models (the zoo, uploaded ONNX files stored by digest), datasets (the bundled
ones, uploaded NPZ files), platforms. A job names them by reference, never by path:

    zoo:lenet5                       a zoo model
    model:<sha256>                   an uploaded model
    job:<id>/<path under its out/>   a model another job wrote (a flow's stages)
    digits | mnist                   a bundled dataset (mnist: when the server has $ALOHA_DATA)
    dataset:<sha256>                 an uploaded NPZ

`resolve_*` turn a reference into what the command line takes; a reference that does not resolve
is the client's mistake (BadReference, a 4xx), and no reference becomes a path outside the data
folder.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile

from aloha_ir.errors import AlohaError

DIGEST = re.compile(r"^[0-9a-f]{64}$")
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class BadReference(Exception):
    """A reference that names nothing this server has (HTTP 404/422 with the message)."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.message, self.status = message, status


class Rejected(Exception):
    """An upload that is refused: `status` 413 (too large), 415 (not that format), 422 (the
    importer refused it)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message, self.status = message, status


def within(root: str, relative: str) -> str:
    """`root`/`relative`, refused when it would leave `root` (.., an absolute path, a symlink out)."""
    if not relative or "\x00" in relative or os.path.isabs(relative):
        raise BadReference(f"'{relative}' is not a path inside the job's outputs", 404)
    root = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root, relative))
    if path != root and not path.startswith(root + os.sep):
        raise BadReference(f"'{relative}' is not a path inside the job's outputs", 404)
    return path


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Resources:
    """The catalogue of one data folder (Store.root); limits in bytes and parameters."""

    def __init__(self, root: str, max_upload: int, max_params: int, data_root: str | None = None):
        self.root, self.max_upload, self.max_params = root, max_upload, max_params
        self.data_root = data_root if data_root is not None else os.environ.get("ALOHA_DATA")

    # --- models -----------------------------------------------------------------------------------

    def _model_path(self, digest: str) -> str:
        return os.path.join(self.root, "models", f"{digest}.onnx")

    def models(self) -> list[dict]:
        from frontends.zoo import entries
        out = [{"ref": f"zoo:{e.name}", "name": e.name, "source": "zoo", "description":
                e.description, "available": e.kind != "data" or self.mnist_dir() is not None}
               for e in entries()]
        return out + self._listed("models", "model")

    def add_model(self, name: str, tmp: str) -> dict:
        """Store an uploaded ONNX file (received into `tmp`, which is moved or removed) by digest
        after the importer accepted it (its shapes inferred, every operator known); Rejected
        otherwise, with nothing kept."""
        try:
            return self._keep(tmp, "models", ".onnx", "model", name, self._check_model(tmp, name))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _keep(self, tmp: str, folder: str, suffix: str, prefix: str, name: str,
              description: str) -> dict:
        """Move an accepted upload to FOLDER/DIGEST+SUFFIX, its listing beside it."""
        digest = sha256_file(tmp)
        meta = {"digest": digest, "name": _display_name(name), "description": description}
        os.replace(tmp, os.path.join(self.root, folder, digest + suffix))
        _write_json(os.path.join(self.root, folder, digest + ".json"), meta)
        return {"ref": f"{prefix}:{digest}", **meta}

    def _listed(self, folder: str, prefix: str) -> list[dict]:
        out = []
        for name in sorted(os.listdir(os.path.join(self.root, folder))):
            if name.endswith(".json"):
                with open(os.path.join(self.root, folder, name)) as f:
                    meta = json.load(f)
                out.append({"ref": f"{prefix}:{meta['digest']}", "name": meta["name"],
                            "source": "uploaded", "description": meta["description"]})
        return out

    def _check_model(self, path: str, name: str) -> str:
        import onnx
        from google.protobuf.message import DecodeError
        try:
            proto = onnx.load(path, load_external_data=False)
        except (DecodeError, ValueError, OSError, RuntimeError) as e:
            raise Rejected(f"{_display_name(name)} is not an ONNX model ({e.__class__.__name__})",
                           415) from None
        if not proto.graph.node:
            raise Rejected(f"{_display_name(name)} is not an ONNX model (no graph nodes)", 415)
        params = sum(math.prod(t.dims) for t in proto.graph.initializer)
        if params > self.max_params:
            raise Rejected(f"{_display_name(name)} has {params:,} parameters; this server takes "
                           f"at most {self.max_params:,} (alohac serve --max-params)", 413)
        from frontends.loader import load_model
        try:
            module = load_model(path)
        except AlohaError as e:
            raise Rejected(f"{_display_name(name)}: the importer refused it: {e.one_line()}",
                           422) from None
        from aloha_ir.dialects import nn
        from aloha_ir.dialects.nn import graph_of
        graph = graph_of(module)
        ops = sum(1 for op in graph.ops if not isinstance(op, (nn.ConstOp, nn.InputOp,
                                                                 nn.OutputOp)))
        return f"uploaded ONNX: {ops} layers, {params:,} parameters"

    def resolve_model(self, ref: str, jobs_root: str | None = None) -> str:
        """The command line's MODEL for a reference."""
        if not isinstance(ref, str):
            raise BadReference("a model reference is a string")
        if ref.startswith("zoo:"):
            from frontends.zoo import canonical_name, zoo_names
            name = ref[4:]
            try:
                known = canonical_name(name) in zoo_names()
            except AlohaError:
                known = False
            if not known:
                raise BadReference(f"no zoo model '{name}' (GET /models lists them)")
            return ref
        if ref.startswith("model:"):
            digest = ref[6:]
            path = self._model_path(digest) if DIGEST.match(digest) else ""
            if not path or not os.path.exists(path):
                raise BadReference(f"no uploaded model '{ref}' (POST /models stores one)")
            return path
        if ref.startswith("job:"):
            job_id, _, rel = ref[4:].partition("/")
            if not JOB_ID.match(job_id):
                raise BadReference(f"'{ref}' names no job")
            path = within(os.path.join(jobs_root or os.path.join(self.root, "jobs"), job_id,
                                       "out"), rel)
            if not os.path.isfile(path):
                raise BadReference(f"job {job_id} has no output '{rel}'")
            return path
        raise BadReference(f"'{ref}' is not a model reference (zoo:NAME, model:DIGEST or "
                           "job:ID/PATH)")

    def uploaded_name(self, ref: str) -> str | None:
        """The file name an uploaded model (model:DIGEST) was sent with, ending in .onnx, so a
        job can show the user's name rather than the store's; None for any other reference."""
        if not ref.startswith("model:") or not DIGEST.match(ref[6:]):
            return None
        try:
            with open(os.path.join(self.root, "models", ref[6:] + ".json")) as f:
                name = json.load(f)["name"]
        except (OSError, ValueError, KeyError):
            return None
        return name if name.lower().endswith(".onnx") else name + ".onnx"

    def model_digest(self, ref: str, resolved: str) -> str:
        """What identifies the model's content, for the result cache."""
        if ref.startswith("zoo:"):
            from importlib.metadata import version
            return f"{ref}@aloha-{version('aloha')}"
        return sha256_file(resolved)

    # --- datasets ---------------------------------------------------------------------------------

    def mnist_dir(self) -> str | None:
        if not self.data_root:
            return None
        path = os.path.join(self.data_root, "mnist")
        return path if os.path.isdir(path) else None

    def datasets(self) -> list[dict]:
        out = [{"ref": "digits", "name": "digits", "source": "bundled",
                "description": "scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)"}]
        if self.mnist_dir():
            out.append({"ref": "mnist", "name": "mnist", "source": "bundled",
                        "description": "MNIST 28x28 handwritten digits ($ALOHA_DATA/mnist)"})
        return out + self._listed("datasets", "dataset")

    def add_dataset(self, name: str, tmp: str) -> dict:
        """Store an uploaded NPZ (x/y, or x_train/y_train/x_test/y_test; received into `tmp`,
        which is moved or removed) after the dataset loader read it; Rejected otherwise."""
        try:
            from frontends.datasets import load
            try:
                splits = load(f"npz:{tmp}")
            except AlohaError as e:
                raise Rejected(f"{_display_name(name)}: not a dataset this server reads: "
                               f"{e.one_line()}", 422) from None
            except Exception as e:  # noqa: BLE001 -- a damaged archive, whatever numpy raises
                raise Rejected(f"{_display_name(name)} is not an NPZ archive "
                               f"({e.__class__.__name__})", 415) from None
            shape = "x".join(map(str, splits.train.x.shape[1:]))
            count = sum(len(d.x) for d in (splits.train, splits.val, splits.test))
            return self._keep(tmp, "datasets", ".npz", "dataset", name,
                              f"uploaded NPZ: {count:,} samples of {shape}, "
                              f"{splits.train.classes} classes")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def resolve_dataset(self, ref: str) -> str:
        """The command line's DATA for a reference."""
        if ref == "digits":
            return "digits"
        if ref == "mnist":
            d = self.mnist_dir()
            if d is None:
                raise BadReference("this server has no MNIST (start it with ALOHA_DATA set)")
            return f"mnist:{d}"
        if isinstance(ref, str) and ref.startswith("dataset:") and DIGEST.match(ref[8:]):
            path = os.path.join(self.root, "datasets", f"{ref[8:]}.npz")
            if os.path.exists(path):
                return f"npz:{path}"
        raise BadReference(f"no dataset '{ref}' (GET /datasets lists them)")

    def dataset_digest(self, ref: str) -> str:
        return ref if not ref.startswith("dataset:") else ref[8:]

    # --- platforms --------------------------------------------------------------------------------

    @staticmethod
    def platforms() -> list[dict]:
        from archdesc.loader import load_platform, platform_names
        out = []
        for name in platform_names():
            p = load_platform(name)
            out.append({"name": p.name, "description": p.description,
                        "datatypes": list(p.datatypes), "backend": p.backend,
                        "operating_points": list(p.operating_points),
                        "units": [f"{pe.count} x {pe.name} ({pe.kind})" for pe in p.pes]})
        return out

    @staticmethod
    def check_platform(name: str) -> None:
        from archdesc.loader import platform_names
        if name not in platform_names():
            raise BadReference(f"no platform '{name}' (GET /platforms lists them)")

    # --- uploads ---------------------------------------------------------------------------------

    def too_large(self, size: int) -> str:
        return (f"the upload is {size:,} bytes or more; this server takes at most "
                f"{self.max_upload:,} (alohac serve --max-upload)")

    def upload_file(self, folder: str) -> str:
        """A new temporary file beside an upload's final place (models/ or datasets/)."""
        fd, tmp = tempfile.mkstemp(dir=os.path.join(self.root, folder), prefix=".upload-")
        os.close(fd)
        return tmp


def _display_name(name: str | None) -> str:
    """A client's file name, for messages and listings only (never a path)."""
    base = os.path.basename((name or "upload").replace("\\", "/"))
    return re.sub(r"[^\w.+-]", "_", base)[:100] or "upload"


def _write_json(path: str, data: dict) -> None:
    from aloha_ir.outputs import write_text
    write_text(path, json.dumps(data, indent=1) + "\n")
