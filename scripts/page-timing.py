"""How fast an explore page opens: its size, and the seconds from navigation until its table is drawn and until a
job's cards are drawn, in the distribution's Chromium (median of 5 fresh pages).

    python scripts/page-timing.py multirun/DATE/TIME/explore.html [JOB_INDEX]
"""

import statistics
import sys
import time
from pathlib import Path

from playwright.sync_api import sync_playwright


def main(page_file: Path, job: int) -> None:
    opened, cards = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
        for _ in range(5):
            page = browser.new_page()
            start = time.perf_counter()
            page.goto(page_file.resolve().as_uri())
            page.wait_for_selector("tr.job")
            opened.append(time.perf_counter() - start)
            start = time.perf_counter()
            page.click(f"tr.job[data-job='{job}']")
            page.wait_for_selector("#job h2")
            cards.append(time.perf_counter() - start)
            page.close()
        browser.close()
    print(f"{page_file}: {page_file.stat().st_size / 1e6:.1f} MB; table drawn in {statistics.median(opened):.2f} s, "
          f"job {job}'s cards in {statistics.median(cards):.2f} s (median of 5)")


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 0)
