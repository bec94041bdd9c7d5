"""Parses an iCalendar feed with the `icalendar` library (PyPI) and prints it as JSON.

Run by crates/podium-hub/tests/summit_ical.rs: `python ical_dump.py FEED.ics`. Prints {"version", "prodid",
"method", "icalendar", "events": [{"uid", "sequence", "status", "dtstart", "dtend", "utc", "summary", "location",
"dtstamp"}]} with dtstart and dtend in Unix seconds; exits non-zero when the feed does not parse.
"""

import json
import sys

import icalendar


def is_utc(dt) -> bool:
    offset = dt.utcoffset()
    return offset is not None and offset.total_seconds() == 0


def main() -> None:
    with open(sys.argv[1], "rb") as f:
        cal = icalendar.Calendar.from_ical(f.read())
    events = []
    for event in cal.walk("VEVENT"):
        start = event.decoded("DTSTART")
        end = event.decoded("DTEND")
        events.append(
            {
                "uid": str(event["UID"]),
                "sequence": int(event["SEQUENCE"]) if "SEQUENCE" in event else None,
                "status": str(event["STATUS"]) if "STATUS" in event else None,
                "dtstart": int(start.timestamp()),
                "dtend": int(end.timestamp()),
                "utc": is_utc(start) and is_utc(end),
                "summary": str(event["SUMMARY"]),
                "location": str(event["LOCATION"]) if "LOCATION" in event else None,
                "dtstamp": "DTSTAMP" in event,
            }
        )
    out = {
        "version": str(cal.get("VERSION")),
        "prodid": str(cal.get("PRODID")),
        "method": str(cal["METHOD"]) if "METHOD" in cal else None,
        "icalendar": icalendar.__version__,
        "events": events,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
