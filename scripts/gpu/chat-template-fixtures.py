# Run where transformers is installed (the GPU machine), from the repository root:
#   python3 scripts/gpu/chat-template-fixtures.py [tests/fixtures/chat-templates]
# Renders every template of tests/fixtures/chat-templates x every conversation of its cases.json with transformers'
# own chat-template renderer (what tokenizer.apply_chat_template(..., tokenize=False) calls: the sandboxed Jinja
# environment with trim_blocks, lstrip_blocks, loopcontrols, tojson without HTML escaping, raise_exception and
# strftime_now), and writes expected.json: {"transformers": version, "renderings": {template: {case: text or
# "error: message"}}}. matq's HfJinjaDifferentialTests compares its own renderings with this file when it is present.
import json, os, sys
import transformers
from transformers.utils import chat_template_utils as ctu

folder = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/chat-templates"
cases = json.load(open(os.path.join(folder, "cases.json"), encoding="utf-8"))

def render(template, tokens, case):
    kwargs = dict(tokens)
    kwargs.update(case.get("kwargs", {}))
    compiled = ctu._compile_jinja_template(template)
    # the variables apply_chat_template passes: messages, tools (None when absent), documents, add_generation_prompt,
    # the tokenizer's special tokens and the caller's keyword arguments
    return compiled.render(messages=case["messages"], tools=case.get("tools"), documents=None,
                           add_generation_prompt=case["add_generation_prompt"], **kwargs)

out = {}
for name, tokens in cases["templates"].items():
    template = open(os.path.join(folder, name + ".jinja"), encoding="utf-8").read()
    out[name] = {}
    for case in cases["cases"]:
        try:
            out[name][case["name"]] = render(template, tokens, case)
        except Exception as e:  # raise_exception in the template (TemplateError), recorded as matq records it
            out[name][case["name"]] = "error: " + str(e)
path = os.path.join(folder, "expected.json")
with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump({"transformers": transformers.__version__, "renderings": out}, f, ensure_ascii=False, indent=1)
os.replace(path + ".tmp", path)
print(f"wrote {path}: {sum(len(v) for v in out.values())} renderings with transformers {transformers.__version__}")
