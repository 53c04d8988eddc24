import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
IMPL = os.path.dirname(HERE)
VECTORS = os.path.normpath(os.path.join(IMPL, "..", "..", "test-vectors"))


def load_json(*parts):
    with open(os.path.join(VECTORS, *parts)) as f:
        return json.load(f)


def record_vectors():
    index = load_json("index.json")
    return [load_json("records", e["id"] + ".json") for e in index["records"]]


def pack_vectors():
    return load_json("packs", "index.json")["packs"]


def read_pack(entry) -> bytes:
    with open(os.path.join(VECTORS, "packs", entry["file"]), "rb") as f:
        return f.read()
