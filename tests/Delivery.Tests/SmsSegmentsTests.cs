using Crm.Delivery.Channels.Sms;

namespace Crm.Delivery.Tests;

public sealed class SmsSegmentsTests
{
    public static TheoryData<string, string, SmsEncoding, int, int> Cases => new()
    {
        { "empty", "", SmsEncoding.Gsm7, 1, 0 },
        { "160 GSM-7", new string('a', 160), SmsEncoding.Gsm7, 1, 160 },
        { "161 GSM-7", new string('a', 161), SmsEncoding.Gsm7, 2, 161 },
        { "306 GSM-7 = 2 x 153", new string('a', 306), SmsEncoding.Gsm7, 2, 306 },
        { "307 GSM-7", new string('a', 307), SmsEncoding.Gsm7, 3, 307 },
        { "GSM-7 specials stay GSM-7", "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà", SmsEncoding.Gsm7, 1, 42 },
        { "euro counts 2", "€" + new string('a', 158), SmsEncoding.Gsm7, 1, 160 },
        { "euro pushes over 160", "€" + new string('a', 159), SmsEncoding.Gsm7, 2, 161 },
        { "all extension chars", "^{}\\[~]|€", SmsEncoding.Gsm7, 1, 18 },
        // An escape sequence is never split across parts: 152 + (2 does not fit) -> the euro opens part 2.
        { "escape not split across parts", new string('a', 152) + "€" + new string('a', 152), SmsEncoding.Gsm7, 3, 306 },
        { "70 Korean", new string('가', 70), SmsEncoding.Ucs2, 1, 70 },
        { "71 Korean", new string('가', 71), SmsEncoding.Ucs2, 2, 71 },
        { "134 Korean = 2 x 67", new string('가', 134), SmsEncoding.Ucs2, 2, 134 },
        { "one Korean char makes all UCS-2", new string('a', 69) + "가", SmsEncoding.Ucs2, 1, 70 },
        { "lowercase c-cedilla is not GSM-7", "ç", SmsEncoding.Ucs2, 1, 1 },
        { "emoji is a surrogate pair", "😀", SmsEncoding.Ucs2, 1, 2 },
        { "surrogate pair not split across parts", new string('가', 66) + "😀" + new string('가', 66), SmsEncoding.Ucs2, 3, 134 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Counts_encoding_segments_and_units(string why, string body, SmsEncoding encoding, int segments, int units)
    {
        Assert.Equal(new SmsSegmentCount(encoding, segments, units), SmsSegments.Count(body));
        Assert.NotNull(why);
    }
}
