"""A local Hugging Face instruct model as an explainer backend: greedy text, yes/no by log-probability."""

from __future__ import annotations

from pathlib import Path

from .cache import CachedBackend


def fold_system(messages: list[dict]) -> list[dict]:
    """The messages with every system message folded into the first user turn ("system\n\nuser").

    For chat templates without a system role (Gemma's raises "System role not supported" and
    requires strictly alternating user/assistant turns, so a system turn cannot simply become a
    user turn). With no user turn the system text becomes one. The input is not modified.
    """
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if not system:
        return rest
    for m in rest:
        if m["role"] == "user":
            m["content"] = f"{system}\n\n{m['content']}"
            return rest
    return [{"role": "user", "content": system}, *rest]


def render_chat(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """`messages` as prompt text through the tokenizer's chat template (which must exist).

    A template without a system role gets the system text folded into the first user turn
    (fold_system). Detected by trying: the template raises on the system message (Gemma), or its
    output leaves a system message's text out (a template that drops the role silently). Any
    other template error surfaces as raised. Used by every local model that renders a chat: the
    local explainer and rewriter (LocalClient) and the local sentence generator.
    """
    from jinja2.exceptions import TemplateError

    def apply(msgs):
        return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=add_generation_prompt)

    system = [m["content"].strip() for m in messages if m["role"] == "system"]
    if not system:
        return apply(messages)
    try:
        text = apply(messages)
    except TemplateError:
        return apply(fold_system(messages))
    return text if all(s in text for s in system) else apply(fold_system(messages))


class LocalClient(CachedBackend):
    """A local Hugging Face instruct model behind the same interface, greedy and disk-cached.

    `model_id` names the model in cache keys (default: the model's name_or_path); a cache needs one,
    since two random models with an empty name would otherwise share answers.
    """

    def __init__(self, model, tokenizer, device="cpu", max_new_tokens: int = 48, cache_dir: Path | None = None,
                 model_id: str | None = None):
        self.model, self.tokenizer, self.device = model.to(device).eval(), tokenizer, device
        self.max_new_tokens = int(max_new_tokens)
        self.model_id = model_id or getattr(model, "name_or_path", "") or ""
        if cache_dir is not None and not self.model_id:
            raise ValueError("LocalClient with a cache_dir needs a model_id (the model has no name_or_path)")
        self._init_cache(cache_dir)
        self.chat = bool(getattr(tokenizer, "chat_template", None))

    def prompt(self, messages: list[dict]) -> str:
        """The model's chat template if it has one (render_chat: a system message is folded into the
        first user turn where the template has no system role), else a plain "User:/Assistant:" transcript."""
        if self.chat:
            return render_chat(self.tokenizer, messages)
        turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
        return "\n\n".join(turns) + "\n\nAssistant:"

    def _ids(self, text: str) -> list[int]:
        # A chat template already holds its special tokens (BOS); a plain prompt gets the tokenizer's.
        return self.tokenizer(text, add_special_tokens=not self.chat)["input_ids"]

    def complete(self, messages: list[dict]) -> str:
        request = {"model": self.model_id, "kind": "complete", "messages": messages,
                   "max_new_tokens": self.max_new_tokens}
        return self._cached(request, lambda: self._generate(messages))["text"]

    def _generate(self, messages: list[dict]) -> dict:
        import torch

        ids = torch.tensor([self._ids(self.prompt(messages))], device=self.device)  # [1, pos]
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                      max_new_tokens=self.max_new_tokens, pad_token_id=pad)  # [1, pos + new]
        return {"text": self.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()}

    def option_logprobs(self, messages: list[dict], options: list[str]) -> dict[str, float]:
        """Total log-probability of each option's tokens right after the prompt (one forward pass).

        Each option counts as the log-sum-exp over its spellings {option, Option}, so a model that
        prefers "Yes" to "yes" is not scored as doubting the answer.
        """
        request = {"model": self.model_id, "kind": "choose", "messages": messages, "options": list(options)}
        return self._cached(request, lambda: self._score(messages, options))

    def _score(self, messages: list[dict], options: list[str]) -> dict[str, float]:
        import torch

        text = self.prompt(messages)
        prompt_ids = self._ids(text)
        sep = "" if self.chat else " "
        spellings = [(o, s) for o in options for s in dict.fromkeys([o, o[:1].upper() + o[1:]])]
        seqs = []
        for _, s in spellings:
            full = self._ids(text + sep + s)  # tokenized together: the joint split the model would see
            cont = full[len(prompt_ids):] if full[: len(prompt_ids)] == prompt_ids else None
            if not cont:
                cont = self.tokenizer(sep + s, add_special_tokens=False)["input_ids"]
                full = prompt_ids + cont
            seqs.append((full, len(full) - len(cont)))
        if all(len(f) == start + 1 and f[:start] == prompt_ids for f, start in seqs):
            # every spelling is one token after the prompt itself (yes/no): one forward pass of the
            # prompt gives them all -- the same numbers as the padded batch below (causal attention),
            # at a quarter of its cost for 2 options x 2 spellings
            with torch.inference_mode():
                last = self.model(input_ids=torch.tensor([prompt_ids], device=self.device)).logits[0, -1]
            logp = torch.log_softmax(last.float(), dim=-1).cpu()  # [vocab]
            totals = {o: [] for o in options}
            for (f, _), (o, _) in zip(seqs, spellings):
                totals[o].append(float(logp[f[-1]]))
            return {o: float(torch.logsumexp(torch.tensor(v), 0)) for o, v in totals.items()}
        width = max(len(f) for f, _ in seqs)
        ids = torch.zeros(len(seqs), width, dtype=torch.long)  # [n, pos]; right-padded
        mask = torch.zeros_like(ids)
        for i, (f, _) in enumerate(seqs):
            ids[i, : len(f)], mask[i, : len(f)] = torch.tensor(f), 1
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        totals: dict[str, list[float]] = {o: [] for o in options}
        for i, ((f, start), (o, _)) in enumerate(zip(seqs, spellings)):
            logp = torch.log_softmax(logits[i, start - 1 : len(f) - 1].float(), dim=-1).cpu()  # [n_cont, vocab]
            totals[o].append(float(logp[torch.arange(len(f) - start), torch.tensor(f[start:])].sum()))
        return {o: float(torch.logsumexp(torch.tensor(v), 0)) for o, v in totals.items()}

    def choose_with_raw(self, messages: list[dict], options: list[str]) -> tuple[str | None, str]:
        """(the most probable option, the per-option log-probs as text); None on an exact tie
        (e.g. every option maps to the same unknown token): no preference is no label."""
        scores = self.option_logprobs(messages, options)
        ranked = sorted(options, key=lambda o: -scores[o])
        best = None if len(ranked) > 1 and scores[ranked[0]] == scores[ranked[1]] else ranked[0]
        return best, "log p: " + ", ".join(f"{o}={scores[o]:.3f}" for o in options)
