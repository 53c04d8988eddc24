"""A scripted OpenAI-compatible upstream for the proxy tests (127.0.0.1 only).

The request's `model` names the scenario. Every request must carry the upstream key
(`Authorization: Bearer $HELM_TEST_UPSTREAM_KEY`): the proxy must replace the client's
HELM token with it. `GET /__last/<model>` returns the last request body received for a
scenario (tests check what the proxy passed on).

    python3 upstream.py                   # prints "upstream listening on http://127.0.0.1:PORT"
    python3 upstream.py --tls CA.pem      # HTTPS with a throwaway CA (written to CA.pem)
"""

import json
import os
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KEY = os.environ.get("HELM_TEST_UPSTREAM_KEY", "sk-upstream-test")
LAST = {}
LOCK = threading.Lock()
CREATED = 1_800_000_000


def fc(call_id, name, args):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def custom(call_id, name, text):
    return {"id": call_id, "type": "custom", "custom": {"name": name, "input": text}}


def completion(model, message, finish="stop"):
    return {
        "id": "chatcmpl-" + model,
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def assistant(content=None, tool_calls=None):
    m = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls is not None:
        m["tool_calls"] = tool_calls
    return m


READ = '{"path": "/workspace/a.txt"}'
RM = '{"cmd": "rm"}'
LS = '{"cmd": "ls"}'
PATCH = "*** Begin Patch\n*** Update File: a.txt\n-old\n+new\n*** End Patch"


def chat_scenario(model, body):
    """A non-streamed Chat Completions answer: (status, body)."""
    # A second turn (tool results sent back): a plain answer.
    if any(m.get("role") == "tool" for m in body.get("messages", [])):
        return 200, completion(model, assistant("Done."))
    s = model
    if s in ("plain", "bench-plain"):
        return 200, completion(model, assistant("Hello! How can I help?"))
    if s in ("read", "bench-read"):
        return 200, completion(model, assistant(None, [fc("call_read_" + rid(), "read_file", READ)]), "tool_calls")
    if s == "parallel":
        calls = [fc("call_p1_" + rid(), "read_file", READ), fc("call_p2_" + rid(), "shell", RM), fc("call_p3_" + rid(), "shell", LS)]
        return 200, completion(model, assistant("Working on it.", calls), "tool_calls")
    if s == "invalid_json":
        return 200, completion(model, assistant(None, [fc("call_bad_" + rid(), "read_file", '{"path": "/workspace/a.txt"')]), "tool_calls")
    if s == "length":
        return 200, completion(model, assistant(None, [fc("call_len_" + rid(), "read_file", READ)]), "length")
    if s == "custom":
        return 200, completion(model, assistant(None, [custom("call_patch_" + rid(), "apply_patch", PATCH)]), "tool_calls")
    if s == "deploy":
        # Same arguments every time: the retry after the grant is the same call.
        return 200, completion(model, assistant(None, [fc("call_deploy_" + rid(), "deploy", '{"env": "prod"}')]), "tool_calls")
    if s == "denied_only":
        return 200, completion(model, assistant(None, [fc("call_rm_" + rid(), "shell", RM)]), "tool_calls")
    if s == "unknown_tool":
        return 200, completion(model, assistant(None, [fc("call_x_" + rid(), "delete_everything", "{}")]), "tool_calls")
    if s == "echo_tools":
        names = [t.get("function", t.get("custom", t)).get("name", t.get("type")) for t in body.get("tools", [])]
        return 200, completion(model, assistant(json.dumps({"tools": names, "tool_choice": body.get("tool_choice")})))
    if s == "escaped":
        # The key written with a JSON escape: a proxy that looks for the plain key text misses it.
        raw = completion(model, assistant(None, [fc("call_esc_" + rid(), "shell", RM)]), "tool_calls")
        return 200, json.dumps(raw).replace('"tool_calls": [', '"tool\\u005fcalls": [')
    if s == "repeated_key":
        # "tool_calls" twice in one message: a denied call first, an allowed call last
        # (what serde_json and Python keep); a client that keeps the first would read the
        # denied call, so the proxy must not pass these bytes as they are.
        raw = completion(model, assistant(None, [fc("call_rk_" + rid(), "read_file", READ)]), "tool_calls")
        first = json.dumps([fc("call_rk_rm_" + rid(), "shell", RM)])
        return 200, json.dumps(raw).replace('"tool_calls": [', '"tool_calls": ' + first + ', "tool_calls": [', 1)
    if s == "error_429":
        return 429, {"error": {"message": "Rate limit reached", "type": "requests", "param": None, "code": "rate_limit_exceeded"}}
    if s == "not_json":
        return 200, "this is not json {\"tool_calls\": ["
    return 404, {"error": {"message": f"unknown scenario {s}", "type": "invalid_request_error", "param": "model", "code": None}}


def rid():
    return "%08x" % random.getrandbits(32)


def chunk(model, delta, finish=None, index=0):
    return {
        "id": "chatcmpl-s-" + model,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "system_fingerprint": "fp_test",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def split_anywhere(text, seed):
    """The text in pieces of 1 to 4 characters (deterministic per seed)."""
    r = random.Random(seed)
    out, i = [], 0
    while i < len(text):
        n = r.randint(1, 4)
        out.append(text[i:i + n])
        i += n
    return out


def chat_stream(model, body):
    """A streamed Chat Completions answer: a list of SSE data strings."""
    include_usage = (body.get("stream_options") or {}).get("include_usage")
    if any(m.get("role") == "tool" for m in body.get("messages", [])):
        evs = [chunk(model, {"role": "assistant", "content": "Done."}), chunk(model, {}, "stop")]
    elif model in ("stream_plain", "bench-stream-plain"):
        evs = [chunk(model, {"role": "assistant", "content": ""})]
        evs += [chunk(model, {"content": w}) for w in ["Hello", "!", " How", " can", " I", " help", "?"]]
        evs.append(chunk(model, {}, "stop"))
    elif model in ("stream_parallel", "stream_reused_index", "bench-stream-read", "stream_custom", "stream_deploy", "stream_denied"):
        reuse = model == "stream_reused_index"
        if model == "bench-stream-read":
            calls = [("call_sr_" + rid(), "read_file", READ, False)]
        elif model == "stream_custom":
            calls = [("call_sc_" + rid(), "apply_patch", PATCH, True)]
        elif model == "stream_deploy":
            calls = [("call_sd_" + rid(), "deploy", '{"env": "stream"}', False)]
        elif model == "stream_denied":
            calls = [("call_sx_" + rid(), "shell", RM, False)]
        else:
            calls = [("call_s1_" + rid(), "read_file", READ, False), ("call_s2_" + rid(), "shell", RM, False),
                     ("call_s3_" + rid(), "shell", LS, False)]
        evs = [chunk(model, {"role": "assistant", "content": ""})]
        evs += [chunk(model, {"content": w}) for w in ["Let me ", "check."]]
        for k, (cid, name, args, is_custom) in enumerate(calls):
            index = 0 if reuse else k
            for j, piece in enumerate(split_anywhere(args, k)):
                if is_custom:
                    tc = {"index": index, "custom": {"input": piece}}
                    if j == 0:
                        tc.update({"id": cid, "type": "custom"})
                        tc["custom"]["name"] = name
                else:
                    tc = {"index": index, "function": {"arguments": piece}}
                    if j == 0:
                        tc.update({"id": cid, "type": "function"})
                        tc["function"]["name"] = name
                evs.append(chunk(model, {"tool_calls": [tc]}))
        evs.append(chunk(model, {}, "tool_calls"))
    elif model == "stream_length":
        evs = [chunk(model, {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_sl_" + rid(), "type": "function", "function": {"name": "read_file", "arguments": '{"pa'}}]}),
            chunk(model, {}, "length")]
    elif model == "stream_cut":
        # The upstream stops in the middle of a call: no finish, no [DONE].
        return [json.dumps(chunk(model, {"role": "assistant", "content": None, "tool_calls": [
            {"index": 0, "id": "call_cut_" + rid(), "type": "function", "function": {"name": "read_file", "arguments": '{"path": "/work'}}]}))], True
    else:
        return None, False
    if include_usage:
        u = chunk(model, {})
        u["choices"] = []
        u["usage"] = {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12}
        evs.append(u)
    return [json.dumps(e) for e in evs] + ["[DONE]"], False


def response_obj(model, output, status="completed", rid_=None):
    return {
        "id": rid_ or ("resp_" + model + "_" + rid()),
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {"input_tokens": 5, "output_tokens": 7, "total_tokens": 12,
                  "input_tokens_details": {"cached_tokens": 0}, "output_tokens_details": {"reasoning_tokens": 0}},
    }


def r_message(text, mid="msg_1"):
    return {"id": mid, "type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": text, "annotations": []}]}


def r_fc(item_id, call_id, name, args, status="completed"):
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name, "arguments": args, "status": status}


def r_custom(item_id, call_id, name, text):
    return {"id": item_id, "type": "custom_tool_call", "call_id": call_id, "name": name, "input": text, "status": "completed"}


def responses_output(model, body):
    inp = body.get("input")
    if isinstance(inp, list) and any(str(i.get("type", "")).endswith("_call_output") for i in inp if isinstance(i, dict)):
        return [r_message("Done.")]
    if body.get("previous_response_id"):
        return [r_message("Continued.")]
    if model in ("r_plain", "bench-r-plain"):
        return [r_message("Hello! How can I help?")]
    if model in ("r_calls", "r_stream_calls"):
        return [r_message("Working on it."), r_fc("fc_1", "call_r1_" + rid(), "read_file", READ),
                r_fc("fc_2", "call_r2_" + rid(), "shell", RM), r_custom("ctc_3", "call_r3_" + rid(), "apply_patch", PATCH)]
    if model == "r_hosted":
        return [{"id": "ws_1", "type": "web_search_call", "status": "completed", "action": {"type": "search", "query": "x"}},
                r_message(json.dumps([t.get("type") for t in body.get("tools", [])]))]
    if model == "r_local_shell":
        return [{"id": "ls_1", "type": "local_shell_call", "call_id": "call_ls_" + rid(), "status": "completed",
                 "action": {"type": "exec", "command": ["rm", "-rf", "/"], "env": {}}}]
    if model == "r_incomplete":
        return [r_fc("fc_9", "call_ri_" + rid(), "read_file", '{"path": "/wor', status="incomplete")]
    return None


def responses_stream(model, body):
    out = responses_output(model, body)
    if out is None:
        return None
    seq = [0]
    evs = []

    def ev(kind, **kw):
        kw["type"] = kind
        kw["sequence_number"] = seq[0]
        seq[0] += 1
        evs.append((kind, kw))

    resp_id = "resp_" + model + "_" + rid()
    base = response_obj(model, [], "in_progress", resp_id)
    ev("response.created", response=base)
    ev("response.in_progress", response=base)
    for i, item in enumerate(out):
        if item["type"] == "message":
            added = dict(item, content=[], status="in_progress")
            ev("response.output_item.added", output_index=i, item=added)
            ev("response.content_part.added", item_id=item["id"], output_index=i, content_index=0,
               part={"type": "output_text", "text": "", "annotations": []})
            text = item["content"][0]["text"]
            for piece in split_anywhere(text, i):
                ev("response.output_text.delta", item_id=item["id"], output_index=i, content_index=0, delta=piece, logprobs=[])
            ev("response.output_text.done", item_id=item["id"], output_index=i, content_index=0, text=text, logprobs=[])
            ev("response.content_part.done", item_id=item["id"], output_index=i, content_index=0,
               part={"type": "output_text", "text": text, "annotations": []})
            ev("response.output_item.done", output_index=i, item=item)
        elif item["type"] == "function_call":
            ev("response.output_item.added", output_index=i, item=dict(item, arguments="", status="in_progress"))
            for piece in split_anywhere(item["arguments"], i):
                ev("response.function_call_arguments.delta", item_id=item["id"], output_index=i, delta=piece)
            ev("response.function_call_arguments.done", item_id=item["id"], output_index=i, arguments=item["arguments"])
            ev("response.output_item.done", output_index=i, item=item)
        elif item["type"] == "custom_tool_call":
            ev("response.output_item.added", output_index=i, item=dict(item, input="", status="in_progress"))
            for piece in split_anywhere(item["input"], i):
                ev("response.custom_tool_call_input.delta", item_id=item["id"], output_index=i, delta=piece)
            ev("response.custom_tool_call_input.done", item_id=item["id"], output_index=i, input=item["input"])
            ev("response.output_item.done", output_index=i, item=item)
        else:
            ev("response.output_item.added", output_index=i, item=item)
            ev("response.output_item.done", output_index=i, item=item)
    ev("response.completed", response=response_obj(model, out, "completed", resp_id))
    return evs


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def send_json(self, status, obj):
        data = (obj if isinstance(obj, str) else json.dumps(obj)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-request-id", "req_test")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.startswith("/__last/"):
            with LOCK:
                return self.send_json(200, LAST.get(self.path[len("/__last/"):], {}))
        if not self.authorized():
            return
        if self.path == "/v1/models":
            return self.send_json(200, {"object": "list", "data": [{"id": "m", "object": "model", "created": 0, "owned_by": "test"}]})
        self.send_json(404, {"error": {"message": "no route", "type": "invalid_request_error", "param": None, "code": None}})

    def authorized(self):
        if self.headers.get("Authorization") != "Bearer " + KEY:
            self.send_json(401, {"error": {"message": "the upstream key is wrong", "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}})
            return False
        return True

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        if not self.authorized():
            return
        model = body.get("model", "")
        with LOCK:
            LAST[model] = {"body": body, "headers": {k.lower(): v for k, v in self.headers.items()}}
        if model == "drop":
            self.close_connection = True
            self.connection.shutdown(2)
            return
        if self.path == "/v1/embeddings":
            return self.send_json(200, {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "model": model,
                                        "usage": {"prompt_tokens": 1, "total_tokens": 1}})
        if self.path == "/v1/chat/completions":
            if body.get("stream"):
                evs, cut = chat_stream(model, body)
                if evs is None:
                    return self.send_json(404, {"error": {"message": "unknown stream scenario", "type": "invalid_request_error", "param": None, "code": None}})
                return self.stream([(None, e) for e in evs], cut)
            status, out = chat_scenario(model, body)
            return self.send_json(status, out)
        if self.path == "/v1/responses":
            if body.get("stream"):
                evs = responses_stream(model, body)
                if evs is None:
                    return self.send_json(404, {"error": {"message": "unknown scenario", "type": "invalid_request_error", "param": None, "code": None}})
                return self.stream([(k, json.dumps(e)) for k, e in evs], False)
            out = responses_output(model, body)
            if out is None:
                return self.send_json(404, {"error": {"message": "unknown scenario", "type": "invalid_request_error", "param": None, "code": None}})
            status = "incomplete" if model == "r_incomplete" else "completed"
            return self.send_json(200, response_obj(model, out, status))
        self.send_json(404, {"error": {"message": "no route", "type": "invalid_request_error", "param": None, "code": None}})

    def stream(self, events, cut):
        try:
            self.stream_inner(events, cut)
        except (BrokenPipeError, ConnectionResetError):
            # The proxy stopped reading (its client left): nothing to do.
            self.close_connection = True

    def stream_inner(self, events, cut):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        wire = b""
        for name, data in events:
            if name:
                wire += b"event: " + name.encode() + b"\n"
            wire += b"data: " + data.encode() + b"\n\n"
        # Written in pieces split anywhere (including inside an event line).
        r = random.Random(len(wire))
        i = 0
        while i < len(wire):
            n = r.randint(1, 64)
            piece = wire[i:i + n]
            self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
            i += n
        if cut:
            self.close_connection = True
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def tls_context(ca_out):
    """A throwaway CA and a certificate for 127.0.0.1 (TEST ONLY); the CA goes to ca_out."""
    import datetime
    import ssl
    import tempfile
    from ipaddress import IPv4Address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "helm test upstream CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    with open(ca_out, "wb") as f:
        f.write(ca.public_bytes(serialization.Encoding.PEM))
    d = tempfile.mkdtemp()
    with open(d + "/cert.pem", "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(d + "/key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d + "/cert.pem", d + "/key.pem")
    return ctx


def main():
    args = sys.argv[1:]
    tls = None
    if args[:1] == ["--tls"]:
        tls = tls_context(args[1])
        args = args[2:]
    server = ThreadingHTTPServer(("127.0.0.1", int(args[0]) if args else 0), Handler)
    server.daemon_threads = True
    scheme = "http"
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    print("upstream listening on %s://127.0.0.1:%d" % (scheme, server.server_address[1]), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
