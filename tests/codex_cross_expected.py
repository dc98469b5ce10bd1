"""Hand-computed expected totals of the cross-file Codex samples in ``tests/samples/codex_cross``.

Five threads, six files (session-formats.md section 3.1, "Forks, sub-agents and resumed threads"):

- ``P``  a parent thread: 3 API calls, every info-bearing ``token_count`` written twice.
- ``S1`` a sub-agent spawned by P (old shape ``source.subagent.thread_spawn``): it replays P's
  history up to the spawn with the ORIGINAL timestamps (P's calls 1 and 2), then makes 2 calls of
  its own whose ``total_token_usage`` continues from P's call-2 total.
- ``S2`` a sub-agent in the 0.144+ shape (``thread_source: "subagent"``, top-level
  ``parent_thread_id`` and ``session_id`` = P): replays nothing, its counters start at zero.
- ``F``  a user fork of P (``forked_from_id`` = P): P's meta and whole history re-stamped to one
  burst (09:10:00.501-.524), then after a pause 2 calls of its own continuing P's last total.
- ``R``  a resumed thread in two segments (``...-R.jsonl`` on the 13th, ``...-R_SEG.jsonl`` on
  the 14th); segment 2's first ``token_count`` repeats segment 1's last; 4 calls in all.

The right answer: F owns only its own calls; P's session owns P's calls plus S1's and S2's own
calls (filed under P with ``agent_id`` = their thread); replays and re-emits add nothing; R is one
session with each call once.

Buckets are Claude-style and disjoint: ``input_tokens`` = Codex input - cached, ``cache_read``
= cached, ``output_tokens`` = Codex output (reasoning included); ``total_tokens`` = Codex input
(incl. cached) + output. Each number below is a literal computed by hand from the
``last_token_usage`` of each call (input, cached, output) in the sample files, checked against
the final ``total_token_usage`` of each thread. ``api_calls`` counts distinct usage facts that
count; ``tool_calls`` distinct call ids; ``human_prompts`` the ``user_message`` lines of a
main thread (not sub-agents, not a fork's replayed copy).
"""

from __future__ import annotations

__all__ = ["AGENTS", "EXPECTED", "F", "FILES", "FORKED_FROM", "P", "R", "S1", "S2", "SEG"]

P = "019ce146-3280-7a3c-9d51-6b2f0e4c8a01"
S1 = "019ce146-55b2-7c14-8e7a-3f90d2b6c512"
S2 = "019ce146-55c6-7f08-a3d9-81e4c7a2b623"
F = "019ce14f-5a44-7b61-8c2e-94d0a7f3e734"
R = "019ce77f-3700-7d25-b6f1-2c8e5a9d0845"
SEG = "019ceb77-7341-7e90-8a4b-d3f6c1e2a956"  # R's second segment

FORKED_FROM = {F: P}

# Path under tests/samples/codex_cross -> (session_id, file_kind, agent_id), as filed by the
# producer.
FILES = {
    f"sessions/2026/03/12/rollout-2026-03-12T09-00-00-{P}.jsonl": (P, "main", None),
    f"sessions/2026/03/12/rollout-2026-03-12T09-00-09-{S1}.jsonl": (P, "subagent", S1),
    f"sessions/2026/03/12/rollout-2026-03-12T09-00-09-{S2}.jsonl": (P, "subagent", S2),
    f"sessions/2026/03/12/rollout-2026-03-12T09-10-00-{F}.jsonl": (F, "main", None),
    f"sessions/2026/03/13/rollout-2026-03-13T14-00-00-{R}.jsonl": (R, "main", None),
    f"sessions/2026/03/14/rollout-2026-03-14T08-30-00-{R}_{SEG}.jsonl": (R, "main", None),
}

# --- per thread (the calls each thread made itself) -----------------------------------------
#
# P, last_token_usage (input, cached, output):
#   call 1 (10000,  4000, 250)  call 2 (11500,  9984, 180)  call 3 (12200, 11392, 120)
#   input    = (10000-4000) + (11500-9984) + (12200-11392) = 6000 + 1516 + 808 = 8324
#   cached   = 4000 + 9984 + 11392                          = 25376
#   output   = 250 + 180 + 120                              = 550
#   total    = 10250 + 11680 + 12320                        = 34250
#   check: final total_token_usage (33700 in, 25376 cached, 550 out, 34250 total):
#          33700-25376 = 8324
P_OWN = {"input_tokens": 8324, "cache_read_tokens": 25376, "output_tokens": 550,
         "total_tokens": 34250, "api_calls": 3, "tool_calls": 3}  # call_P1, call_P2, call_P3
#
# S1 (continues P's call-2 total 21500/13984/430/21930):
#   call A (14000, 12800, 400)  call B (15100, 14976, 90)
#   input    = (14000-12800) + (15100-14976) = 1200 + 124 = 1324
#   cached   = 12800 + 14976                 = 27776
#   output   = 400 + 90                      = 490
#   total    = 14400 + 15190                 = 29590
#   check: final total 51520 - P's call-2 total 21930 = 29590;
#          (50600-21500) - (41760-13984) = 29100 - 27776 = 1324
S1_OWN = {"input_tokens": 1324, "cache_read_tokens": 27776, "output_tokens": 490,
          "total_tokens": 29590, "api_calls": 2, "tool_calls": 1}  # call_S1a
#
# S2 (starts at zero; call A's total == its last):
#   call A (6000, 0, 300)  call B (6700, 5888, 110)
#   input    = (6000-0) + (6700-5888) = 6000 + 812 = 6812
#   cached   = 0 + 5888               = 5888
#   output   = 300 + 110              = 410
#   total    = 6300 + 6810            = 13110
#   check: final total (12700 in, 5888 cached, 410 out, 13110): 12700-5888 = 6812
S2_OWN = {"input_tokens": 6812, "cache_read_tokens": 5888, "output_tokens": 410,
          "total_tokens": 13110, "api_calls": 2, "tool_calls": 1}  # call_S2a
#
# F (continues P's last total 33700/25376/550/34250):
#   call 1 (36000, 33536, 210)  call 2 (37500, 36224, 140)
#   input    = (36000-33536) + (37500-36224) = 2464 + 1276 = 3740
#   cached   = 33536 + 36224                 = 69760
#   output   = 210 + 140                     = 350
#   total    = 36210 + 37640                 = 73850
#   check: final total 108100 - 34250 = 73850; (107200-33700) - (95136-25376) = 73500 - 69760 = 3740
F_OWN = {"input_tokens": 3740, "cache_read_tokens": 69760, "output_tokens": 350,
         "total_tokens": 73850, "api_calls": 2, "tool_calls": 1}  # call_F1
#
# R (segment 1: calls 1-2; segment 2: its first row repeats call 2, then calls 3-4):
#   call 1 (9000, 3200, 400)  call 2 (9800, 8704, 160)  call 3 (21000, 9984, 300)
#   call 4 (21900, 20992, 130)
#   input    = 5800 + 1096 + 11016 + 908   = 18820
#   cached   = 3200 + 8704 + 9984 + 20992  = 42880
#   output   = 400 + 160 + 300 + 130       = 990
#   total    = 9400 + 9960 + 21300 + 22030 = 62690
#   check: final total (61700 in, 42880 cached, 990 out, 62690): 61700-42880 = 18820
R_OWN = {"input_tokens": 18820, "cache_read_tokens": 42880, "output_tokens": 990,
         "total_tokens": 62690, "api_calls": 4, "tool_calls": 2}  # call_R1, call_R2

# --- per stored session ---------------------------------------------------------------------
#
# P's session = P + S1 + S2:
#   input  8324 + 1324 + 6812    = 16460
#   cached 25376 + 27776 + 5888  = 59040
#   output 550 + 490 + 410       = 1450
#   total  34250 + 29590 + 13110 = 76950   (= 16460 + 59040 + 1450)
#   calls  3 + 2 + 2 = 7; tool calls 3 + 1 + 1 = 5 (S1's replayed call_P1..3 are P's ids)
#   human prompts 1 ("add input validation to the parser"; the sub-agents' task prompts and
#   S1's replayed copy of P's prompt are in sub-agent files)
# F's session = F's own calls only; 1 human prompt ("now also validate the config file"; the
#   replayed copy of P's prompt is in the excluded prefix).
# R's session = both segments, each call once; 2 human prompts.
EXPECTED = {
    P: {"input_tokens": 16460, "cache_read_tokens": 59040, "output_tokens": 1450,
        "total_tokens": 76950, "api_calls": 7, "tool_calls": 5, "human_prompts": 1},
    F: {**F_OWN, "human_prompts": 1},
    R: {**R_OWN, "human_prompts": 2},
}

# P's session split by agent_id (None = P's own thread); each value has EXPECTED's token and
# call fields but no human_prompts.
AGENTS = {P: {None: P_OWN, S1: S1_OWN, S2: S2_OWN}}
