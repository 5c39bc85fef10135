// Package webconsole holds the browser test of Presence's relay: the Intel
// toolkit's own web component (npm @device-management-toolkit/ui-toolkit
// 3.3.x, its AMTRedirector) runs in a headless Debian Chromium, driven by
// chromedp, and opens Serial-over-LAN to a simulated device through
// /relay/webrelay.ashx of a whole running instance, with the AMT login left
// to Presence (../../../shared/amt-toolbox.md §3).
//
// The package has no code of its own: everything is in its tests. The
// toolkit is not in the repository; scripts/uitoolkit.sh fetches it with
// npm pack into the cache, and scripts/test.sh passes its directory to the
// tests as PRESENCE_UITOOLKIT. Without Chromium or the bundle the tests skip,
// and under CI=true or PRESENCE_REQUIRE_CHROMIUM=1 they fail.
package webconsole
