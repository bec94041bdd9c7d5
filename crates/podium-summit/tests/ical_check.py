"""Parses a Podium iCalendar export with the `icalendar` library (PyPI) and checks it against what the release says.

Reads one JSON object on stdin: {"ics": "<the feed>", "expected": [{"uid", "start", "end", "sequence", "status",
"summary"}, ...]} with start and end in Unix seconds. Exits 0 and prints a summary when the feed matches, else
raises (exit 1) naming the first difference. Run by crates/podium-summit/tests/ical_python.rs.
"""

import json
import sys

import icalendar


def main() -> None:
    data = json.load(sys.stdin)
    cal = icalendar.Calendar.from_ical(data["ics"].encode("utf-8"))
    assert str(cal["VERSION"]) == "2.0", cal["VERSION"]
    assert str(cal["PRODID"]) == "-//Podium//podium-summit//EN", cal["PRODID"]
    refresh = cal.get("REFRESH-INTERVAL")
    assert refresh is not None, "no REFRESH-INTERVAL"
    assert refresh.params.get("VALUE") == "DURATION", refresh.params
    assert refresh.dt.total_seconds() == 3600, refresh.dt
    events = {}
    for event in cal.walk("VEVENT"):
        uid = str(event["UID"])
        assert uid not in events, f"UID {uid} twice"
        events[uid] = event
    expected = {e["uid"]: e for e in data["expected"]}
    assert set(events) == set(expected), f"UIDs differ: extra {set(events) - set(expected)}, missing {set(expected) - set(events)}"
    for uid, want in expected.items():
        event = events[uid]
        start = event.decoded("DTSTART")
        end = event.decoded("DTEND")
        assert start.utcoffset().total_seconds() == 0, f"{uid}: DTSTART not UTC"
        assert int(start.timestamp()) == want["start"], f"{uid}: DTSTART {start} != {want['start']}"
        assert int(end.timestamp()) == want["end"], f"{uid}: DTEND {end} != {want['end']}"
        assert int(event["SEQUENCE"]) == want["sequence"], f"{uid}: SEQUENCE {event['SEQUENCE']} != {want['sequence']}"
        assert str(event["STATUS"]) == want["status"], f"{uid}: STATUS {event['STATUS']} != {want['status']}"
        assert str(event["SUMMARY"]) == want["summary"], f"{uid}: SUMMARY {event['SUMMARY']!r} != {want['summary']!r}"
        for required in ("DTSTAMP", "LAST-MODIFIED", "LOCATION"):
            assert required in event, f"{uid}: no {required}"
    statuses = sorted(str(e["STATUS"]) for e in events.values())
    print(f"ok: {len(events)} events, statuses {statuses}, icalendar {icalendar.__version__}")


if __name__ == "__main__":
    main()
