using Crm.Fakes.Twilio;
using Crm.Delivery.Channels.Sms;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.Extensions.DependencyInjection;

namespace Crm.Fakes.Tests.Twilio;

/// <summary>Status callbacks from the fake to a real HTTP receiver that validates X-Twilio-Signature.</summary>
public sealed class StatusCallbackTests : IAsyncLifetime
{
    private readonly FakeTwilioServer _twilio = new();
    private WebApplication _receiver = null!;
    private Uri _receiverUri = null!;
    private readonly List<IReadOnlyList<KeyValuePair<string, string>>> _received = [];

    public async Task InitializeAsync()
    {
        await _twilio.StartAsync();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore();
        builder.Services.AddRoutingCore();
        _receiver = builder.Build();
        _receiver.Urls.Add("http://127.0.0.1:0");
        _receiver.MapPost("/twilio/status", ReceiveAsync);
        await _receiver.StartAsync();
        _receiverUri = new Uri(_receiver.Urls.Single());
    }

    public async Task DisposeAsync()
    {
        await _receiver.DisposeAsync();
        await _twilio.DisposeAsync();
    }

    [Fact]
    public async Task Callback_carries_the_message_status_and_a_signature_the_receiver_validates()
    {
        using var client = new TwilioHttp(_twilio);
        var callbackUrl = new Uri(_receiverUri, "/twilio/status?tenant=t1").ToString();
        var sid = (await client.SmsAsync("+821012345678", "hi", statusCallback: callbackUrl)).Str("sid")!;

        var delivered = await _twilio.SendStatusCallbackAsync(sid);
        var failed = await _twilio.SendStatusCallbackAsync(sid, "undelivered", errorCode: 30003);

        Assert.Equal(204, delivered.ResponseStatus);
        Assert.Equal(204, failed.ResponseStatus);
        Assert.Equal(callbackUrl, delivered.Url);
        var form = _received[1].ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(sid, form["MessageSid"]);
        Assert.Equal("undelivered", form["MessageStatus"]);
        Assert.Equal("30003", form["ErrorCode"]);
        Assert.Equal("+821012345678", form["To"]);
        Assert.Equal("+15005550006", form["From"]);
        Assert.Equal("undelivered", Assert.Single(_twilio.Messages).Status);
    }

    [Fact]
    public async Task A_callback_signed_with_another_accounts_token_is_rejected_by_the_receiver()
    {
        await using var impostor = new FakeTwilioServer(authToken: "another-token-0123456789abcdef01");
        await impostor.StartAsync();
        using var client = new TwilioHttp(impostor);
        var callbackUrl = new Uri(_receiverUri, "/twilio/status").ToString();
        var sid = (await client.SmsAsync("+821012345678", "hi", statusCallback: callbackUrl)).Str("sid")!;

        var result = await impostor.SendStatusCallbackAsync(sid);

        Assert.Equal(403, result.ResponseStatus);
    }

    private async Task ReceiveAsync(HttpContext http)
    {
        var form = await http.Request.ReadFormAsync();
        var pairs = form.SelectMany(f => f.Value.Select(v => KeyValuePair.Create(f.Key, v ?? ""))).ToList();
        // The URL as Twilio requested it; here, no proxy in between, so the request's own URL.
        var url = http.Request.GetEncodedUrl();
        var signature = http.Request.Headers[TwilioSignature.HeaderName].ToString();
        lock (_received)
        {
            _received.Add(pairs);
        }
        http.Response.StatusCode = TwilioSignature.Validate(url, pairs, _twilio.AuthToken, signature) ? 204 : 403;
    }
}
