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

        // GSM-7 part boundaries: 153 septets a part once the body passes 160.
        { "459 GSM-7 = 3 x 153", new string('a', 459), SmsEncoding.Gsm7, 3, 459 },
        { "460 GSM-7", new string('a', 460), SmsEncoding.Gsm7, 4, 460 },
        { "newline and carriage return are GSM-7", "a\nb\r", SmsEncoding.Gsm7, 1, 4 },
        { "form feed is an extension char", "\f", SmsEncoding.Gsm7, 1, 2 },
        // Extension characters (ESC + char): 2 septets each, 76 to a 153-septet part (the 153rd septet cannot hold one).
        { "80 euros = 160 septets", new string('€', 80), SmsEncoding.Gsm7, 1, 160 },
        { "81 euros", new string('€', 81), SmsEncoding.Gsm7, 2, 162 },
        { "152 euros = 2 x 76", new string('€', 152), SmsEncoding.Gsm7, 2, 304 },
        { "153 euros", new string('€', 153), SmsEncoding.Gsm7, 3, 306 },
        { "braces in a template", "Hi {name}, 50% off [today] ~ see you", SmsEncoding.Gsm7, 1, 41 },
        // A typographic apostrophe is not GSM-7: the whole body goes UCS-2.
        { "curly apostrophe", "It’s on sale", SmsEncoding.Ucs2, 1, 12 },
        // UCS-2 part boundaries: 67 units a part once the body passes 70.
        { "135 Korean", new string('가', 135), SmsEncoding.Ucs2, 3, 135 },
        { "201 Korean = 3 x 67", new string('가', 201), SmsEncoding.Ucs2, 3, 201 },
        { "202 Korean", new string('가', 202), SmsEncoding.Ucs2, 4, 202 },
        { "Korean advertisement", "(광고)데모상점\n봄 세일 20% 할인\n무료수신거부 080-123-4567", SmsEncoding.Ucs2, 1, 40 },
        { "Korean advertisement over 70", "(광고)데모상점\n" + new string('할', 50) + "\n무료수신거부 080-123-4567", SmsEncoding.Ucs2, 2, 79 },
    };

    [Theory]
    [MemberData(nameof(Cases))]
#pragma warning disable xUnit1026 // "why" names the case in the test's display name
    public void Counts_encoding_segments_and_units(string why, string body, SmsEncoding encoding, int segments, int units) =>
        Assert.Equal(new SmsSegmentCount(encoding, segments, units), SmsSegments.Count(body));
#pragma warning restore xUnit1026
}
