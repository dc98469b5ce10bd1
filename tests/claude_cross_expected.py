"""Hand-computed expectations for tests/samples/claude_cross (duplicates across files).

The samples are nine small Claude Code sessions in one project folder, written so that the same
API responses sit in several files (docs/session-formats.md section 1.11):

1. chained resume (2.0.x ``--resume``): A -> B -> C. B's file first re-writes A's whole chain
   (sessionId changed, nothing else), C's file re-writes B's whole chain (A's part and B's part),
   so each of A's three responses sits in three files.
2. background hand-off (2.1.x): D -> E. E's file copies D's chain, and every line of E (copies and
   its own) carries ``"sessionKind":"bg"``.
3. fork whose origin continues (``--fork-session``): G -> H. H copies G's chain and adds one turn
   at 09:20; G itself goes on at 11:45 with a turn H does not have. G also holds a rewound
   (dead) prompt+response before the fork point, which H did not copy.
4. sub-agents linked only by their folder: K with ``K/subagents/agent-a4e1b7c.jsonl`` and
   ``agent-a9d20f3.jsonl``; the Task results in K name no ``agentId`` (neither in the text nor in
   ``toolUseResult``), and there are no ``agent_progress`` mirrors.
5. Z: a plain session, nothing shared (starts with an ``isMeta`` caveat and two
   ``system/local_command`` lines, none of which is a prompt).

The right answer counted here: one API response = one ``(message.id, requestId)`` across all
files, owned by the session that first wrote it; a resumed/forked session owns only its new
turns. Usage per response is its largest report (streamed fragments repeat the usage with a
growing ``output_tokens``; the last one wins). ``cache_creation_tokens`` = 5m + 1h writes.
``total_tokens`` = input + output + cache_creation + cache_read. ``prompts`` = human prompts in
the session's main file that the session owns (not copies, not tool results, not ``isMeta``,
not sub-agent task prompts). Sub-agent files are filed under K: their usage, responses and tool
calls are included in K's numbers (see :data:`SUBAGENT_BREAKDOWN` for the split).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "COPIED_LINES", "EXPECTED", "FILES", "GRAND_TOTALS", "LABELS", "NAIVE_TOTAL_TOKENS",
    "PROJECT", "PROJECT_DIR", "PROJECT_OF", "RESPONSE_OWNERS", "ROOT", "SESSIONS",
    "SUBAGENT_BREAKDOWN", "SUBAGENT_FILES",
]

ROOT = Path(__file__).resolve().parent / "samples" / "claude_cross"  # pass as the projects' parent
PROJECT = "-home-dev-cross"  # encoded cwd "/home/dev/cross"
PROJECT_DIR = ROOT / "projects" / PROJECT

SESSION_A = "cb0aabac-34f9-4056-886d-a98e490c9b67"  # resume origin (2.0.27)
SESSION_B = "eecd16d9-50b8-4b91-81e2-7683fc05cb76"  # --resume of A (2.0.28)
SESSION_C = "6c8651f4-4333-4767-a7ad-57eab0d0fccc"  # --resume of B (2.0.30)
SESSION_D = "240525e7-5a93-46af-a89a-b864586782f4"  # hand-off origin (2.1.39)
SESSION_E = "bcdc0251-cd4e-44a9-8592-8605b49213bf"  # background hand-off of D (2.1.41, bg)
SESSION_G = "67bc7d48-431b-4db1-8b5a-1c2ed98eef8f"  # fork origin, continues later (2.1.39)
SESSION_H = "e355ea34-3bf9-40bc-a572-9e97614e0a00"  # --fork-session of G (2.1.41)
SESSION_K = "99e8ce88-b8af-4db7-ac85-12f9d594c04b"  # two sub-agents linked by folder only
SESSION_Z = "8cced00d-7ac4-4201-a1c2-2f027f0dd4e9"  # control

LABELS = {
    SESSION_A: "A", SESSION_B: "B", SESSION_C: "C", SESSION_D: "D", SESSION_E: "E",
    SESSION_G: "G", SESSION_H: "H", SESSION_K: "K", SESSION_Z: "Z",
}
SESSIONS = tuple(LABELS)
PROJECT_OF = {session: PROJECT for session in SESSIONS}

SUBAGENT_FILES = {  # agentId -> file (sessionId in every line = K)
    "a4e1b7c": f"projects/{PROJECT}/{SESSION_K}/subagents/agent-a4e1b7c.jsonl",  # audits api/
    "a9d20f3": f"projects/{PROJECT}/{SESSION_K}/subagents/agent-a9d20f3.jsonl",  # audits worker/
}

# Every sample file (relative to ROOT) and the session it belongs to.
FILES = [
    *((f"projects/{PROJECT}/{session}.jsonl", session) for session in SESSIONS),
    (SUBAGENT_FILES["a4e1b7c"], SESSION_K),
    (SUBAGENT_FILES["a9d20f3"], SESSION_K),
]

# Lines at the head of a file that re-write another session's chain (uuid lines only;
# file-history-snapshot lines are never copied).
COPIED_LINES = {
    SESSION_B: 9,   # all of A's uuid lines: prompt, 3 fragments, result, 1, result, prompt, 1
    SESSION_C: 13,  # B's whole chain: A's 9 + B's own 4 (prompt, response, result, response)
    SESSION_E: 5,   # D's chain: prompt, 2 fragments, result, response (+ sessionKind "bg")
    SESSION_H: 6,   # G's chain to the fork: prompt, 2 fragments, prompt, response, turn_duration
}

# (message.id:requestId) -> owning session: 25 distinct responses.
RESPONSE_OWNERS = {
    # A: in A, B and C
    "msg_01VgBunfHSKK2W21itELUrDj:req_011Cnisw1HMLaJCF9s2cei5b": SESSION_A,  # 3 fragments
    "msg_01MndkYw6l1E8UsuCSKg1f0a:req_011COZTXhWN0QSYiwTDdB4mf": SESSION_A,
    "msg_01DjnxWYTdRXIJfD0unU8uku:req_011CQaWsMPSBudg3bB0VAvIm": SESSION_A,
    # B: in B and C
    "msg_01kzadiU9eMRc55YMHveh9YP:req_011CbTQMMiYAdGGnxaQvLTb1": SESSION_B,
    "msg_018w0yJmayxAJXZ3oUvcdUWd:req_011CYeqhIylUJ3GjQURrLZp7": SESSION_B,
    # C: only in C
    "msg_01nNEJKsFPcWN1KzXKJpLuoe:req_011CKzlGYI74tZdEJtModHel": SESSION_C,  # 2 fragments
    # D: in D and E
    "msg_01bbcOPLTB0AKNtqapZbjmRm:req_011CFJn8ZoqO5CEfUaaZQepZ": SESSION_D,  # 2 fragments
    "msg_0187o8gEorLm1c08vfbYDmbN:req_011CRgvmThrADZA7Uu5xrAhN": SESSION_D,
    # E
    "msg_01C3ZRBZZptS4XESXGq8T74E:req_011CF4EjQZqS8r01jDFyWei6": SESSION_E,  # 2 fragments
    "msg_01HD34vzyhmj3Jg7y3ZkIfsz:req_011CNswlb4BFtYrNZ8aTrraO": SESSION_E,
    # G: first and third in G and H; the dead one and the late one only in G
    "msg_01O28Deb4nqNJl10OFB7jT7m:req_011C1jmPLItglOga4IMZiWNQ": SESSION_G,  # 2 fragments
    "msg_01NEClN2oPWoKKh9KYClCGPB:req_011CiIeHKPz3KKWf3lrotx1u": SESSION_G,  # dead branch
    "msg_01AdThi4yZYUvskTtubL7dKA:req_011CS0Y3bvINxooQpnGSov0l": SESSION_G,
    "msg_01denReGSXFfTcncka58YzjY:req_011CnuS8jxKF8YvmwELkUdbD": SESSION_G,  # after the fork
    # H
    "msg_01Oqbc7GEJShUzoDuSlzyvga:req_011CdMYUbENt3lh6zsWRS1aR": SESSION_H,
    # K main file
    "msg_01IEAedd33TL2hp01xYaGpGd:req_011CbG1AV7zP4ijUJPFfbphh": SESSION_K,  # 3 fragments, 2 Tasks
    "msg_01mxiyfA9hKpEaoEpRNpn0h6:req_011Cy6JN1aI0ekK9BuwTsO1P": SESSION_K,
    "msg_01bQ1YPuYyiES5czB4sGSib7:req_011CMqjXvAMYsYpGVPWqDIUC": SESSION_K,
    "msg_01mZ4j185xaoDF7c0vmPZgqU:req_011CeI01V3Z1ZBXb12ettbEw": SESSION_K,
    # K sub-agents
    "msg_015bwHdEdYEwUVs6F1saZ9hM:req_011CphkP4eeGyACNQZDNQwr6": SESSION_K,  # a4e1b7c, 2 fragments
    "msg_01Z7d6yWoInxMCQFu7TjnLqU:req_011CMVW7csSR8ZQ9ZJzVKEpR": SESSION_K,  # a4e1b7c
    "msg_01SAWu3dGKTTBvhuMH0YP9lE:req_011CyQHVYTaIOZehQx2N1csk": SESSION_K,  # a9d20f3
    "msg_01feY8MpBNOGuJVXWk51MhZ3:req_011CWAklemnV5YrwAKYZXqoO": SESSION_K,  # a9d20f3
    # Z
    "msg_01OqUr9nritjnzufiXh3wzwA:req_011CcVx74ZGLCwaS7Oj7gLd4": SESSION_Z,  # 2 fragments
    "msg_01OtYTgu7zhn9eBQR810wGLf:req_011CPpgu1qDAorJJwL0MqRGF": SESSION_Z,
}

# Per response below: (input, cache_creation 5m+1h, cache_read, output) = total.
EXPECTED = {
    # A: r1 (4, 5200, 11800, 141 final of 12/38/141) = 17145 [thinking, text, Read]
    #    r2 (1, 1350, 17000, 388) = 18739 [Edit]
    #    r3 (1, 620, 18350, 96) = 19067 [text]
    SESSION_A: {
        "input_tokens": 6,              # 4 + 1 + 1
        "output_tokens": 625,           # 141 + 388 + 96
        "cache_creation_tokens": 7170,  # 5200 + 1350 + 620
        "cache_read_tokens": 47150,     # 11800 + 17000 + 18350
        "total_tokens": 54951,          # 6 + 625 + 7170 + 47150 = 17145 + 18739 + 19067
        "responses": 3,
        "prompts": 2,                   # "add a --dry-run flag", "does it still exit non-zero"
        "subagent_prompts": 0,
        "tool_calls": 2,                # Read, Edit
        "subagents": 0,
        "resumed_from": None,
    },
    # B (own turns only): r1 (3, 0+18900 [1h], 4100, 512) = 23515 [Write]
    #                     r2 (1, 700+0, 23000, 84) = 23785 [text]
    SESSION_B: {
        "input_tokens": 4,              # 3 + 1
        "output_tokens": 596,           # 512 + 84
        "cache_creation_tokens": 19600,  # 18900 (1h) + 700 (5m)
        "cache_read_tokens": 27100,     # 4100 + 23000
        "total_tokens": 47300,          # 4 + 596 + 19600 + 27100 = 23515 + 23785
        "responses": 2,
        "prompts": 1,                   # "add a test for the dry-run path"
        "subagent_prompts": 0,
        "tool_calls": 1,                # Write
        "subagents": 0,
        "resumed_from": SESSION_A,
    },
    # C (own turn only): r1 (3, 1500+300, 21400, 163 final of 15/163) = 23366 [thinking, text]
    SESSION_C: {
        "input_tokens": 3,
        "output_tokens": 163,
        "cache_creation_tokens": 1800,  # 1500 (5m) + 300 (1h)
        "cache_read_tokens": 21400,
        "total_tokens": 23366,          # 3 + 163 + 1800 + 21400
        "responses": 1,
        "prompts": 1,                   # "summarize what changed on this branch"
        "subagent_prompts": 0,
        "tool_calls": 0,
        "subagents": 0,
        "resumed_from": SESSION_B,
    },
    # D: r1 (6, 7400, 12100, 119 final of 27/119) = 19625 [text, Grep]
    #    r2 (1, 2300, 19500, 233) = 22034 [text]
    SESSION_D: {
        "input_tokens": 7,              # 6 + 1
        "output_tokens": 352,           # 119 + 233
        "cache_creation_tokens": 9700,  # 7400 + 2300
        "cache_read_tokens": 31600,     # 12100 + 19500
        "total_tokens": 41659,          # 7 + 352 + 9700 + 31600 = 19625 + 22034
        "responses": 2,
        "prompts": 1,                   # "why is the nightly export job so slow?"
        "subagent_prompts": 0,
        "tool_calls": 1,                # Grep
        "subagents": 0,
        "resumed_from": None,
    },
    # E (own turns only): r1 (2, 3100, 21800, 612 final of 40/612) = 25514 [thinking, Edit]
    #                     r2 (1, 900, 24900, 158) = 25959 [text]
    SESSION_E: {
        "input_tokens": 3,              # 2 + 1
        "output_tokens": 770,           # 612 + 158
        "cache_creation_tokens": 4000,  # 3100 + 900
        "cache_read_tokens": 46700,     # 21800 + 24900
        "total_tokens": 51473,          # 3 + 770 + 4000 + 46700 = 25514 + 25959
        "responses": 2,
        "prompts": 1,                   # "yes, batch it"
        "subagent_prompts": 0,
        "tool_calls": 1,                # Edit
        "subagents": 0,
        "resumed_from": SESSION_D,
    },
    # G: r1 (4, 6100, 9800, 264 final of 11/264) = 16168 [thinking, text]     09:02
    #    dead (1, 380, 15900, 201) = 16482 [text], rewound, off the chain     09:05
    #    r2 (1, 410, 15900, 187) = 16498 [text]  <- fork point (H copies r1, r2)  09:07
    #    r3 (3, 12900, 4200, 58) = 17161 [text], written after H's turn        11:45
    SESSION_G: {
        "input_tokens": 9,              # 4 + 1 + 1 + 3
        "output_tokens": 710,           # 264 + 201 + 187 + 58
        "cache_creation_tokens": 19790,  # 6100 + 380 + 410 + 12900
        "cache_read_tokens": 45800,     # 9800 + 15900 + 15900 + 4200
        "total_tokens": 66309,          # 9 + 710 + 19790 + 45800 = 16168 + 16482 + 16498 + 17161
        "responses": 4,                 # the rewound response was billed: it counts
        "prompts": 4,                   # pip cache?, poetry? (rewound), actions/cache?, summary
        "subagent_prompts": 0,
        "tool_calls": 0,
        "subagents": 0,
        "resumed_from": None,
    },
    # H (own turn only): r1 (3, 980, 16300, 342) = 17625 [text]                09:20
    SESSION_H: {
        "input_tokens": 3,
        "output_tokens": 342,
        "cache_creation_tokens": 980,
        "cache_read_tokens": 16300,
        "total_tokens": 17625,          # 3 + 342 + 980 + 16300
        "responses": 1,
        "prompts": 1,                   # "let's try the actions/cache variant anyway"
        "subagent_prompts": 0,
        "tool_calls": 0,
        "subagents": 0,
        "resumed_from": SESSION_G,
    },
    # K main: r1 (5, 8800, 13200, 305 final of 22/180/305) = 22310 [text, Task, Task]
    #         r2 (1, 1900, 22000, 412) = 24313 [text]
    #         r3 (1, 760, 23900, 266) = 24927 [Edit]
    #         r4 (1, 330, 24660, 71) = 25062 [text]            main = 96612
    # a4e1b7c: s1 (3, 4100, 5200, 97 final of 18/97) = 9400 [text, Grep]
    #          s2 (1, 650, 9300, 143) = 10094 [text]           agent = 19494
    # a9d20f3: s1 (3, 4150, 5200, 88) = 9441 [Grep]
    #          s2 (1, 300, 9350, 64) = 9715 [text]             agent = 19156
    # (the Task toolUseResult.usage/totalTokens in K's main file is a summary: never counted)
    SESSION_K: {
        "input_tokens": 16,             # main 5+1+1+1=8, a4e1b7c 3+1=4, a9d20f3 3+1=4
        "output_tokens": 1446,          # main 305+412+266+71=1054, 97+143=240, 88+64=152
        # main 8800+1900+760+330=11790, a4e1b7c 4100+650=4750, a9d20f3 4150+300=4450
        "cache_creation_tokens": 20990,
        # main 13200+22000+23900+24660=83760, a4e1b7c 5200+9300=14500, a9d20f3 5200+9350=14550
        "cache_read_tokens": 112810,
        "total_tokens": 135262,         # 16 + 1446 + 20990 + 112810 = 96612 + 19494 + 19156
        "responses": 8,                 # 4 main + 2 + 2
        "prompts": 2,                   # "audit the repo ...", "fix the api one ..."
        "subagent_prompts": 2,          # the two Task prompts, first line of each agent file
        "tool_calls": 5,                # main: Task, Task, Edit; agents: Grep, Grep
        "subagents": 2,
        "resumed_from": None,
    },
    # Z: r1 (4, 5600, 10400, 96 final of 10/96) = 16100 [thinking, Bash]
    #    r2 (1, 1250, 16000, 220) = 17471 [text]
    SESSION_Z: {
        "input_tokens": 5,              # 4 + 1
        "output_tokens": 316,           # 96 + 220
        "cache_creation_tokens": 6850,  # 5600 + 1250
        "cache_read_tokens": 26400,     # 10400 + 16000
        "total_tokens": 33571,          # 5 + 316 + 6850 + 26400 = 16100 + 17471
        "responses": 2,
        "prompts": 1,                   # "what changed in the last five commits?" (not the caveat)
        "subagent_prompts": 0,
        "tool_calls": 1,                # Bash
        "subagents": 0,
        "resumed_from": None,
    },
}

# K's numbers split by file (already included in EXPECTED[SESSION_K]).
SUBAGENT_BREAKDOWN = {
    "main": {"input_tokens": 8, "output_tokens": 1054, "cache_creation_tokens": 11790,
             "cache_read_tokens": 83760, "total_tokens": 96612, "responses": 4, "tool_calls": 3},
    "a4e1b7c": {"input_tokens": 4, "output_tokens": 240, "cache_creation_tokens": 4750,
                "cache_read_tokens": 14500, "total_tokens": 19494, "responses": 2, "tool_calls": 1},
    "a9d20f3": {"input_tokens": 4, "output_tokens": 152, "cache_creation_tokens": 4450,
                "cache_read_tokens": 14550, "total_tokens": 19156, "responses": 2, "tool_calls": 1},
}

GRAND_TOTALS = {
    # A 6 + B 4 + C 3 + D 7 + E 3 + G 9 + H 3 + K 16 + Z 5
    "input_tokens": 56,
    # 625 + 596 + 163 + 352 + 770 + 710 + 342 + 1446 + 316
    "output_tokens": 5320,
    # 7170 + 19600 + 1800 + 9700 + 4000 + 19790 + 980 + 20990 + 6850
    "cache_creation_tokens": 90880,
    # 47150 + 27100 + 21400 + 31600 + 46700 + 45800 + 16300 + 112810 + 26400
    "cache_read_tokens": 375260,
    # 56 + 5320 + 90880 + 375260
    # = 54951 + 47300 + 23366 + 41659 + 51473 + 66309 + 17625 + 135262 + 33571
    "total_tokens": 471516,
    "responses": 25,        # 3 + 2 + 1 + 2 + 2 + 4 + 1 + 8 + 2
    "prompts": 14,          # 2 + 1 + 1 + 1 + 1 + 4 + 1 + 2 + 1
    "subagent_prompts": 2,
    "tool_calls": 11,       # 2 + 1 + 0 + 1 + 1 + 0 + 0 + 5 + 1
    "subagents": 2,
    "sessions": 9,
    "files": 11,
}

# The wrong answer, for contrast: dedupe only within each sessionId (copies count again).
NAIVE_TOTAL_TOKENS = {
    SESSION_A: 54951,
    SESSION_B: 102251,   # A's 54951 copied + own 47300
    SESSION_C: 125617,   # B's 102251 copied + own 23366
    SESSION_D: 41659,
    SESSION_E: 93132,    # D's 41659 copied + own 51473
    SESSION_G: 66309,
    SESSION_H: 50291,    # G's r1 16168 + r2 16498 copied + own 17625
    SESSION_K: 135262,
    SESSION_Z: 33571,
    "all": 703043,       # = 471516 + 231527 counted twice or three times
}
