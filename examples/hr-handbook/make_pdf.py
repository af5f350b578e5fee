"""Write 07-travel-and-expenses.pdf, the handbook chapter that arrives as a PDF.

Many handbooks exist only as PDFs exported from a word processor; this chapter is one, so the
examples and tests exercise PDF ingestion. The text lives here and the PDF is generated with
fpdf2 (in the `test` extra): `python examples/hr-handbook/make_pdf.py [OUT.pdf]`. The creation
date is fixed, so the same script always writes the same bytes.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

TITLE = "Travel and Expenses"

CHAPTER: list[tuple[str, list[str]]] = [
    (
        "Before you travel",
        [
            "Travel for work must have a clear business reason and be approved by your manager "
            "before you book. Think first whether a video call would do: every trip between "
            "Portsmouth, Bristol and Aberdeen costs time, money and carbon.",
            "Book all rail, air and hotel travel through Compass Travel, the company travel "
            "desk, in Harbour. Compass holds our negotiated rates and knows where every "
            "traveller is, which matters if something goes wrong. Bookings made elsewhere are "
            "only refunded when Compass could not offer the trip, and you must say so on the "
            "claim.",
        ],
    ),
    (
        "Rail and air",
        [
            "Travel by standard class rail. First class may be booked for a single journey "
            "of more than three hours, or when it costs no more than standard class. Book as "
            "early as you can: advance fares are normally less than half the price of a fare "
            "bought on the day.",
            "Flights within the United Kingdom are allowed only to and from Aberdeen, where the "
            "train takes more than six hours from either southern site. Fly economy for all "
            "flights of less than eight hours. For longer flights premium economy may be booked "
            "with the approval of your director.",
        ],
    ),
    (
        "Driving",
        [
            "Use a pool car from your site when one is free; pool cars are booked in Harbour "
            "and the fuel card in the glovebox pays for fuel. When you use your own car, the "
            "company pays a mileage allowance of 45p per mile for the first 10,000 business "
            "miles in a tax year and 25p per mile after that, plus 5p per mile for each "
            "colleague who travels with you.",
            "Your car insurance must cover business use, and you must hold a full driving "
            "licence. Mileage between home and your usual site is commuting and cannot be "
            "claimed. Parking charges and tolls are repaid with receipts; fines for parking "
            "or speeding are always your own responsibility.",
        ],
    ),
    (
        "Hotels and meals",
        [
            "Hotel rooms are booked through Compass Travel within these limits per night, "
            "including breakfast: 180 pounds in London, 130 pounds in Aberdeen and 120 pounds "
            "anywhere else in the United Kingdom. Abroad, the limits in Harbour for each city "
            "apply.",
            "When you stay away overnight you may claim up to 30 pounds for your evening meal "
            "and non-alcoholic drinks. On a day trip of more than 10 hours you may claim up to "
            "12 pounds for lunch. Alcohol is not repaid, except at a customer dinner approved "
            "in advance by a director.",
        ],
    ),
    (
        "Claiming expenses",
        [
            "Claim expenses in Harbour within 30 days of spending the money, with a photo of "
            "every receipt. Your manager approves claims up to 500 pounds; a claim above 500 "
            "pounds also needs approval from your director. Claims approved by the 10th of the "
            "month are paid with that month's salary.",
            "Claims made more than 90 days after the expense are not paid, unless you were "
            "away on long-term sickness or family leave. Never approve your own claim, or a "
            "claim from someone who approves yours.",
        ],
    ),
    (
        "Company cards",
        [
            "Staff who travel at least once a month may apply for a company credit card. The "
            "card is for business spending only and has a monthly limit of 2,000 pounds. Each "
            "card payment must be matched to a receipt in Harbour by the 5th of the following "
            "month; a card that has unmatched payments for two months in a row is suspended.",
        ],
    ),
    (
        "Safety and insurance",
        [
            "The company travel insurance covers every business trip, including up to two "
            "days of holiday added to a business trip abroad. The policy number and the 24-hour "
            "emergency line are printed on the back of your access badge. If you are ill, "
            "injured or delayed while travelling, call the emergency line first and then your "
            "manager.",
            "Check the travel advice in Harbour before every trip abroad. Trips to countries "
            "marked amber need approval from the Head of People, and trips to countries marked "
            "red are not allowed. Field service engineers working at sea must hold a current "
            "sea survival certificate, which Tidewater pays for and renews every four years.",
        ],
    ),
]


def build_pdf() -> bytes:
    """The chapter as A4 pages, with a heading and an outline entry per section."""
    from fpdf import FPDF

    pdf = FPDF(format="A4")
    pdf.set_creation_date(datetime(2026, 1, 5, 9, 0, tzinfo=UTC))
    pdf.set_title(f"{TITLE} - Tidewater Instruments Employee Handbook")
    pdf.set_author("Tidewater Instruments People team")
    pdf.set_margins(25, 25, 25)
    pdf.set_auto_page_break(True, margin=25)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 20)
    # Sections become the PDF's outline (bookmarks), as a word processor's export would have.
    pdf.start_section(TITLE, level=0)
    pdf.multi_cell(0, 12, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    for heading, paragraphs in CHAPTER:
        pdf.set_font("Helvetica", "B", 14)
        pdf.start_section(heading, level=1)
        pdf.multi_cell(0, 9, heading, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        pdf.set_font("Helvetica", "", 11)
        for paragraph in paragraphs:
            pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
    return bytes(pdf.output())


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("07-travel-and-expenses.pdf")
    out.write_bytes(build_pdf())
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
