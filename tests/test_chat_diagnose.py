"""Diagnostics over records and replies: each finding fires on the case it names, and stays quiet otherwise."""

from __future__ import annotations

import json

from tracetune.chat.diagnose import (
    ArgumentValues,
    answer_key,
    collapsed_outputs,
    copied_input,
    diagnose_data,
    diagnose_replies,
    leakage,
    undeclared_tools,
    value_balance,
    value_distribution,
)
from tracetune.demo.tickets import Ticket, make_tickets


def call(team: str, priority: int) -> dict:
    arguments = json.dumps({"team": team, "priority": priority})
    function = {"name": "route_ticket", "arguments": arguments}
    return {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": function}]}


def test_answer_key_ignores_key_order_and_whitespace():
    a = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"a": 1, "b": 2}'}}]}
    b = {"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": '{"b":2,"a":1}'}}]}
    assert answer_key(a) == answer_key(b) == 'f({"a": 1, "b": 2})'
    assert answer_key({"role": "assistant", "content": " hello \n world"}) == "hello world"


def test_collapse_fires_on_one_answer_for_varied_expectations():
    expected = [call(t, p) for t, p in [("billing", 1), ("tech", 2), ("sales", 3), ("tech", 1)] * 2]
    collapsed = [call("sales", 3)] * 8
    finding = collapsed_outputs(expected, collapsed)
    assert finding is not None and finding.code == "collapsed_outputs"
    assert finding.message.startswith('8/8 validation calls are the same call: route_ticket({"priority": 3, "team"')
    assert "4 distinct values" in finding.message and "tracetune models add" in finding.advice
    # varied answers, or a task whose answer really is constant, are not a collapse
    assert collapsed_outputs(expected, expected) is None
    assert collapsed_outputs([call("sales", 3)] * 8, collapsed) is None
    assert collapsed_outputs(expected[:2], collapsed[:2]) is None  # too few to say
    # answers in prose are format slips, not decisions: 6 calls, all the same, is a collapse
    prose = {"role": "assistant", "content": "I will route it."}
    slipped = collapsed_outputs(expected, [*collapsed[:6], prose, prose])
    assert slipped is not None and slipped.message.startswith("6/6 validation calls are the same call (2 more answered")
    assert collapsed_outputs(expected, [*collapsed[:2], prose, prose, prose, prose]) is None  # 2 calls: too few


def test_value_distribution_keeps_choices_and_drops_free_form_arguments():
    traced, _ = make_tickets(36, 0)
    records = [t.record() for t in traced]
    table = value_distribution(records)
    assert table["route_ticket.team"] == {'"billing"': 12, '"tech"': 12, '"sales"': 12}
    assert set(table["route_ticket.priority"]) == {"1", "2", "3"}
    calls = [
        {"name": "Calculator", "arguments": json.dumps({"num1": n, "num2": 1, "operation": "+"})} for n in range(20)
    ]
    many = [{"messages": [{"role": "user", "content": "?"}, {"role": "assistant", "function_call": c}]} for c in calls]
    assert "Calculator.num1" not in value_distribution(many)  # 20 distinct values in 20 calls: free-form
    assert value_distribution(many)["Calculator.operation"] == {'"+"': 20}


def test_rare_and_unseen_values_and_leakage():
    traced, _ = make_tickets(30, 0)
    train = [t.record() for t in traced if not (t.team == "sales" and t.priority != 1)]
    valid = [t.record() for t in traced if t.team == "sales"] + [Ticket("Help!", "sales", 4).record()]
    findings = {f.code: f for f in value_balance(ArgumentValues.of(train), ArgumentValues.of(valid))}
    assert findings["rare_values"].message.startswith('route_ticket.team: "sales" has fewer than 5 training examples')
    assert '"sales"' in findings["rare_values"].advice
    assert (
        findings["unseen_values"].message
        == "route_ticket.priority: validation expects 4, which no training example shows"
    )
    leak = leakage(train, valid)
    assert leak is not None and leak.message.startswith("4/11 validation prompts also appear")
    assert leakage(train[:5], [t.record() for t in make_tickets(30, 10)[1]]) is None
    assert {f.code for f in diagnose_data(train, valid)} == {"rare_values", "unseen_values", "leakage"}
    balanced = [t.record() for t in make_tickets(45, 0)[0]]
    assert diagnose_data(balanced) == []


def test_copied_input_and_diagnose_replies():
    prompts = [[{"role": "user", "content": f"please translate sentence number {i}"}] for i in range(4)]
    echoes = [{"role": "assistant", "content": f"please translate sentence number {i}"} for i in range(4)]
    answers = [{"role": "assistant", "content": f"Satz Nummer {i}"} for i in range(4)]
    assert copied_input(prompts, echoes) is not None
    assert copied_input(prompts, answers) is None
    records = [{"messages": [*p, a]} for p, a in zip(prompts, answers, strict=True)]
    assert [f.code for f in diagnose_replies(records, echoes)] == ["copied_input"]
    assert diagnose_replies(records, answers) == []


def test_records_that_call_tools_they_do_not_declare_are_called_out():
    call = {"name": "Calculator", "arguments": '{"num1": 2, "num2": 3, "operation": "+"}'}
    converted = {  # what LangChain's convert_messages_for_finetuning makes of a traced function call
        "messages": [{"role": "user", "content": "2 + 3?"}, {"role": "assistant", "content": "", "function_call": call}]
    }
    plain = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    finding = undeclared_tools([converted, converted, plain])
    assert finding is not None and finding.message.startswith("2/3 training records call tools (Calculator)")
    assert "convert_messages_for_finetuning" in finding.advice
    declared = {**converted, "functions": [{"name": "Calculator", "parameters": {"type": "object"}}]}
    assert undeclared_tools([declared, plain]) is None
    assert [f.code for f in diagnose_data([converted] * 6)] == ["undeclared_tools"]
