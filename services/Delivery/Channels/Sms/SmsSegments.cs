// The loopback Twilio fake and the Campaigns service (its SMS previews) compile this same file (with
// CRM_FAKES or CRM_CAMPAIGNS, as internal types) so that what they report and what Delivery computes cannot drift apart.
namespace Crm.Delivery.Channels.Sms;

/// <summary>How an SMS body goes over the air.</summary>
#if CRM_FAKES || CRM_CAMPAIGNS
internal enum SmsEncoding
#else
public enum SmsEncoding
#endif
{
    /// <summary>GSM 03.38 7-bit default alphabet (+ extension table): 160 septets per single SMS.</summary>
    Gsm7,

    /// <summary>UCS-2 (UTF-16 code units): 70 per single SMS. Used as soon as one character is not GSM-7.</summary>
    Ucs2,
}

/// <param name="Encoding">The encoding the whole body must use.</param>
/// <param name="Segments">Number of SMS parts billed and sent.</param>
/// <param name="Characters">
/// Encoding units charged against the limits: GSM-7 septets (extension characters such as '€' count 2)
/// or UTF-16 code units (characters outside the BMP, such as most emoji, count 2).
/// </param>
#if CRM_FAKES || CRM_CAMPAIGNS
internal readonly record struct SmsSegmentCount(SmsEncoding Encoding, int Segments, int Characters);
#else
public readonly record struct SmsSegmentCount(SmsEncoding Encoding, int Segments, int Characters);
#endif

/// <summary>Counts SMS segments the way carriers (and Twilio's num_segments) do.</summary>
#if CRM_FAKES || CRM_CAMPAIGNS
internal static class SmsSegments
#else
public static class SmsSegments
#endif
{
    public const int Gsm7SingleLimit = 160;
    public const int Gsm7PartLimit = 153;   // 7 septets of each part go to the concatenation header (UDH)
    public const int Ucs2SingleLimit = 70;
    public const int Ucs2PartLimit = 67;    // 3 UTF-16 units of each part go to the UDH

    // GSM 03.38 default alphabet (3GPP TS 23.038 §6.2.1), without 0x1B (the escape to the extension table).
    private const string BasicAlphabet =
        "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?" +
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

    // Extension table: each is sent as ESC + char, i.e. 2 septets.
    private const string ExtensionTable = "\f^{}\\[~]|€";

    public static SmsSegmentCount Count(string body)
    {
        ArgumentNullException.ThrowIfNull(body);
        return TryGsm7Widths(body, out var gsmWidths)
            ? Pack(SmsEncoding.Gsm7, gsmWidths, Gsm7SingleLimit, Gsm7PartLimit)
            : Pack(SmsEncoding.Ucs2, Ucs2Widths(body), Ucs2SingleLimit, Ucs2PartLimit);
    }

    private static bool TryGsm7Widths(string body, out List<int> widths)
    {
        widths = new List<int>(body.Length);
        foreach (var c in body)
        {
            if (BasicAlphabet.Contains(c, StringComparison.Ordinal))
            {
                widths.Add(1);
            }
            else if (ExtensionTable.Contains(c, StringComparison.Ordinal))
            {
                widths.Add(2);
            }
            else
            {
                return false;
            }
        }
        return true;
    }

    // One width per Unicode scalar: a surrogate pair is 2 units that must stay in the same part.
    private static List<int> Ucs2Widths(string body)
    {
        var widths = new List<int>(body.Length);
        foreach (var rune in body.EnumerateRunes())
        {
            widths.Add(rune.Utf16SequenceLength);
        }
        return widths;
    }

    // Greedy packing rather than ceil(total / partLimit): an escape sequence or a surrogate pair is
    // never split across parts, so a 2-unit item that does not fit at the end of a part moves whole
    // to the next one, which can cost an extra part.
    private static SmsSegmentCount Pack(SmsEncoding encoding, List<int> widths, int singleLimit, int partLimit)
    {
        var total = widths.Sum();
        if (total <= singleLimit)
        {
            // An empty body still travels as one (empty) SMS.
            return new SmsSegmentCount(encoding, 1, total);
        }

        var parts = 1;
        var used = 0;
        foreach (var width in widths)
        {
            if (used + width > partLimit)
            {
                parts++;
                used = 0;
            }
            used += width;
        }
        return new SmsSegmentCount(encoding, parts, total);
    }
}
